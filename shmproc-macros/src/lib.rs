//! `#[shmproc::plain]`: marks a `#[repr(C)]` struct as plain data that can live
//! in shared memory ([`shmproc::ShmSafe`]), without the user depending on
//! zerocopy. Used through the `shm` crate, which re-exports it.
//!
//! [`shmproc::ShmSafe`]: https://docs.rs/shmproc/latest/shmproc/trait.ShmSafe.html

use proc_macro::{Delimiter, Group, Ident, Literal, Punct, Spacing, Span, TokenStream, TokenTree};

/// Derives zerocopy's `FromBytes`, `IntoBytes`, `Immutable` and
/// `KnownLayout` for a struct, through the copy of zerocopy that `shm`
/// re-exports, so that it is [`ShmSafe`] once it is also `Copy`:
///
/// ```ignore
/// #[shmproc::plain]
/// #[derive(Clone, Copy, Debug)]
/// #[repr(C)]
/// struct Tick {
///     ts: u64,
///     px: f64,
/// }
/// ```
///
/// The compiler checks what makes it sound: every field plain data, every
/// bit pattern valid, no padding, no pointer. A crate that renames its `shm`
/// dependency names the path: `#[shmproc::plain(crate = "my_shm")]`.
///
/// [`ShmSafe`]: https://docs.rs/shmproc/latest/shmproc/trait.ShmSafe.html
#[proc_macro_attribute]
pub fn plain(args: TokenStream, item: TokenStream) -> TokenStream {
    let root = match crate_path(args) {
        Ok(root) => root,
        Err(msg) => return compile_error(&msg),
    };
    let zc = format!("{root}::zerocopy");
    // `crate_path` admits only `::`-separated identifiers, so the line parses.
    let Ok(mut out) = format!(
        "#[derive({zc}::FromBytes, {zc}::IntoBytes, {zc}::Immutable, {zc}::KnownLayout)] \
         #[zerocopy(crate = \"{zc}\")]"
    )
    .parse::<TokenStream>() else {
        return compile_error(&format!("#[shmproc::plain]: {zc} is not a path"));
    };
    out.extend(item);
    out
}

/// `crate = "path"`, or `::shm` when the attribute has no arguments.
fn crate_path(args: TokenStream) -> Result<String, String> {
    let tokens: Vec<TokenTree> = args.into_iter().collect();
    match tokens.as_slice() {
        [] => Ok("::shmproc".to_owned()),
        [TokenTree::Ident(key), TokenTree::Punct(eq), TokenTree::Literal(lit)]
            if key.to_string() == "crate" && eq.as_char() == '=' =>
        {
            let text = lit.to_string();
            let path = text
                .strip_prefix('"')
                .and_then(|t| t.strip_suffix('"'))
                .ok_or_else(|| format!("#[shmproc::plain(crate = ...)] expects a string, found {text}"))?;
            if path.is_empty() || !path.split("::").skip(usize::from(path.starts_with("::"))).all(is_ident) {
                return Err(format!(
                    "#[shmproc::plain(crate = ...)] expects a path such as \"::shm\", found {text}"
                ));
            }
            Ok(path.to_owned())
        }
        _ => Err("#[shmproc::plain] takes no arguments, or `crate = \"path\"`".to_owned()),
    }
}

fn is_ident(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_alphabetic() || c == '_') && chars.all(|c| c.is_alphanumeric() || c == '_')
}

fn compile_error(msg: &str) -> TokenStream {
    let span = Span::call_site();
    let mut bang = Punct::new('!', Spacing::Alone);
    bang.set_span(span);
    let mut body = TokenStream::new();
    body.extend([TokenTree::Literal(Literal::string(msg))]);
    TokenStream::from_iter([
        TokenTree::Ident(Ident::new("compile_error", span)),
        TokenTree::Punct(bang),
        TokenTree::Group(Group::new(Delimiter::Parenthesis, body)),
        TokenTree::Punct(Punct::new(';', Spacing::Alone)),
    ])
}
