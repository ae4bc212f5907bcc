//! [`Dynamic`]: a value of any of Python's plain types, for containers whose
//! keys and values mix types (`{1: "1", "2": 2, 0.25: None}`).

use std::fmt;

use serde::{Deserialize, Serialize};

/// A value of one of Python's plain types.
///
/// As a key, a `Dynamic` is the same key as another only when both are the
/// same variant with the same contents: `Int(1)` and `Float(1.0)` are two
/// keys (Python makes them one), and floats compare by their bits.
///
/// ```
/// use shmproc_manager::Dynamic;
/// # fn main() -> Result<(), shmproc_manager::ManagerError> {
/// let d = shmproc_manager::Dict::<Dynamic, Dynamic>::new()?;
/// d.set(&1.into(), &"1".into())?;
/// d.set(&"2".into(), &2.into())?;
/// d.set(&0.25.into(), &Dynamic::None)?;
/// assert_eq!(d.get(&"2".into())?, Some(Dynamic::Int(2)));
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
pub enum Dynamic {
    /// Python's `None`.
    #[default]
    None,
    /// A bool.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A string.
    Str(String),
    /// Bytes.
    Bytes(Vec<u8>),
    /// A list.
    List(Vec<Dynamic>),
    /// A dict, as its (key, value) pairs in order.
    Dict(Vec<(Dynamic, Dynamic)>),
}

impl fmt::Display for Dynamic {
    /// Python's `repr`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::None => f.write_str("None"),
            Self::Bool(true) => f.write_str("True"),
            Self::Bool(false) => f.write_str("False"),
            Self::Int(i) => write!(f, "{i}"),
            Self::Float(x) if x.fract() == 0.0 && x.is_finite() => write!(f, "{x:.1}"),
            Self::Float(x) => write!(f, "{x}"),
            Self::Str(s) => write!(f, "'{s}'"),
            Self::Bytes(b) => write!(f, "b{:?}", String::from_utf8_lossy(b)),
            Self::List(l) => {
                f.write_str("[")?;
                for (i, v) in l.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{v}")?;
                }
                f.write_str("]")
            }
            Self::Dict(d) => {
                f.write_str("{")?;
                for (i, (k, v)) in d.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{k}: {v}")?;
                }
                f.write_str("}")
            }
        }
    }
}

macro_rules! from {
    ($($t:ty => $v:ident $(as $c:ty)?),* $(,)?) => {$(
        impl From<$t> for Dynamic {
            fn from(x: $t) -> Self {
                Self::$v(x $(as $c)?)
            }
        }
    )*};
}

from! {
    bool => Bool,
    i8 => Int as i64, i16 => Int as i64, i32 => Int as i64, i64 => Int,
    u8 => Int as i64, u16 => Int as i64, u32 => Int as i64,
    f32 => Float as f64, f64 => Float,
    String => Str, Vec<u8> => Bytes, Vec<Dynamic> => List,
}

impl From<&str> for Dynamic {
    fn from(s: &str) -> Self {
        Self::Str(s.to_owned())
    }
}

impl From<()> for Dynamic {
    fn from((): ()) -> Self {
        Self::None
    }
}

impl<T: Into<Dynamic>> From<Option<T>> for Dynamic {
    fn from(x: Option<T>) -> Self {
        x.map_or(Self::None, Into::into)
    }
}

#[cfg(test)]
mod tests {
    use super::Dynamic;

    #[test]
    fn shows_as_python_does() {
        let d = Dynamic::Dict(vec![
            (1.into(), "1".into()),
            ("2".into(), 2.into()),
            (0.25.into(), Dynamic::None),
            (2.0.into(), vec![Dynamic::Bool(true)].into()),
        ]);
        assert_eq!(d.to_string(), "{1: '1', '2': 2, 0.25: None, 2.0: [True]}");
        assert_eq!(Dynamic::from(Option::<i32>::None), Dynamic::None);
    }
}
