"""Prints one line per public item of the crates named, from rustdoc JSON.

Items under `#[doc(hidden)]` are left out (they are not API); re-exports
print as `use` lines naming their source; inherent methods, enum variants
and public fields are listed under their type. Trait impls are left out.
"""
import json
import sys


def hidden(item):
    return any("hidden" in json.dumps(a) for a in item.get("attrs") or [])


def walk(index, item_id, path, out, rename=None, via_use=False):
    item = index.get(str(item_id))
    if item is None or hidden(item):
        return
    (kind, inner), = item["inner"].items()
    name = rename or item.get("name")
    if kind == "use":
        if item.get("visibility") != "public":
            return
        target = index.get(str(inner.get("id")))
        if target is None:
            # From another crate: that crate's own listing covers it.
            star = "*" if inner["is_glob"] else inner["name"]
            out.add(f"{'::'.join(path)}::{star} = use {inner['source']}{'::*' if inner['is_glob'] else ''}")
        elif inner["is_glob"]:
            for child in target["inner"]["module"]["items"]:
                walk(index, child, path, out)
        else:
            walk(index, inner["id"], path, out, rename=inner["name"], via_use=True)
        return
    if not via_use and item.get("visibility") not in ("public", None):
        return
    here = path + [name] if name else path
    if kind == "module":
        if path:
            out.add(f"{'::'.join(here)} mod")
        for child in inner["items"]:
            walk(index, child, here, out)
        return
    if item.get("visibility") != "public" and not via_use:
        return
    out.add(f"{'::'.join(here)} {kind}")
    if kind == "enum":
        for v in inner["variants"]:
            var = index.get(str(v))
            if var and not hidden(var):
                out.add(f"{'::'.join(here)}::{var['name']} variant")
    if kind == "struct":
        fields = inner.get("kind", {})
        plain = fields.get("plain", {}) if isinstance(fields, dict) else {}
        for f in plain.get("fields", []) if isinstance(plain, dict) else []:
            field = index.get(str(f))
            if field and field.get("visibility") == "public" and not hidden(field):
                out.add(f"{'::'.join(here)}.{field['name']} field")
    if kind in ("struct", "enum", "union"):
        for impl_id in inner.get("impls", []):
            impl = index.get(str(impl_id))
            if not impl:
                continue
            imp = impl["inner"]["impl"]
            if imp.get("trait") is not None or imp.get("blanket_impl") is not None or imp.get("is_synthetic"):
                continue
            for m in imp["items"]:
                method = index.get(str(m))
                if method and method.get("visibility") == "public" and not hidden(method):
                    (mkind, _), = method["inner"].items()
                    out.add(f"{'::'.join(here)}::{method['name']} {mkind}")
    if kind == "trait":
        for m in inner.get("items", []):
            method = index.get(str(m))
            if method and not hidden(method):
                (mkind, _), = method["inner"].items()
                out.add(f"{'::'.join(here)}::{method['name']} trait {mkind}")


def main():
    doc_dir, crates = sys.argv[1], sys.argv[2:]
    for crate in crates:
        name = crate.replace("-", "_")
        with open(f"{doc_dir}/{name}.json") as f:
            data = json.load(f)
        out = set()
        walk(data["index"], data["root"], [], out)
        for line in sorted(out):
            print(line)


main()
