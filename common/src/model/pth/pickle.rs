//! The pickle machine of [`super::read_pth`]: the subset `torch.save` uses for a state dict (a
//! dict of `_rebuild_tensor_v2` calls over persistent storage ids), with bounds on nesting and
//! on the values made, so that no file can exhaust the stack or memory.

use std::collections::HashMap;

use super::PthDtype;

/// A storage that a persistent id names.
#[derive(Clone, Debug)]
pub(super) struct Storage {
    pub(super) dtype: PthDtype,
    pub(super) key: String,
    pub(super) numel: usize,
}

/// A tensor as `_rebuild_tensor_v2` describes it: a view of a storage.
#[derive(Clone, Debug)]
pub(super) struct TensorView {
    pub(super) storage: Storage,
    pub(super) offset: usize,
    pub(super) shape: Vec<usize>,
    pub(super) strides: Vec<usize>,
}

/// What the pickle machine holds.
#[derive(Clone, Debug)]
pub(super) enum Value {
    None,
    Bool,
    Int(i64),
    Str(String),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    Dict(Vec<(Value, Value)>),
    Global(String, String),
    Storage(Storage),
    Tensor(TensorView),
}

impl Value {
    pub(super) fn kind(&self) -> String {
        match self {
            Self::None => "None".into(),
            Self::Bool => "a bool".into(),
            Self::Int(_) => "an int".into(),
            Self::Str(_) => "a string".into(),
            Self::Tuple(_) => "a tuple".into(),
            Self::List(_) => "a list".into(),
            Self::Dict(_) => "a dict".into(),
            Self::Global(m, n) => format!("{m}.{n}"),
            Self::Storage(_) => "a storage".into(),
            Self::Tensor(_) => "a tensor".into(),
        }
    }

    fn usize(&self, what: &str) -> Result<usize, String> {
        match self {
            Self::Int(n) if *n >= 0 => Ok(*n as usize),
            other => Err(format!("{what} is {}, not a size", other.kind())),
        }
    }

    fn sizes(&self, what: &str) -> Result<Vec<usize>, String> {
        match self {
            Self::Tuple(items) => items.iter().map(|v| v.usize(what)).collect(),
            other => Err(format!("{what} is {}, not a tuple", other.kind())),
        }
    }
}

/// How deep containers may nest in data.pkl (a state dict needs 4).
const MAX_DEPTH: usize = 32;
/// How many values data.pkl may make, copies from the memo included: far more than a state dict
/// of thousands of tensors needs, far less than exhausts memory.
const MAX_VALUES: usize = 1 << 24;

impl Value {
    /// How deep the value nests (a leaf is 1); values are never built deeper than [`MAX_DEPTH`].
    fn depth(&self) -> usize {
        match self {
            Self::Tuple(items) | Self::List(items) => {
                1 + items.iter().map(Value::depth).max().unwrap_or(0)
            }
            Self::Dict(items) => {
                1 + items
                    .iter()
                    .map(|(k, v)| k.depth().max(v.depth()))
                    .max()
                    .unwrap_or(0)
            }
            _ => 1,
        }
    }

    /// How many values it holds, itself included.
    fn count(&self) -> usize {
        match self {
            Self::Tuple(items) | Self::List(items) => {
                1 + items.iter().map(Value::count).sum::<usize>()
            }
            Self::Dict(items) => {
                1 + items
                    .iter()
                    .map(|(k, v)| k.count() + v.count())
                    .sum::<usize>()
            }
            _ => 1,
        }
    }
}

/// The subset of the pickle machine that `torch.save` uses for a state dict.
pub(super) struct Unpickler<'a> {
    bytes: &'a [u8],
    at: usize,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<u32, Value>,
    /// Values made so far (see [`MAX_VALUES`]).
    made: usize,
}

impl<'a> Unpickler<'a> {
    pub(super) fn new(bytes: &'a [u8]) -> Self {
        Self {
            bytes,
            at: 0,
            stack: Vec::new(),
            marks: Vec::new(),
            memo: HashMap::new(),
            made: 0,
        }
    }

    /// Counts `count` new values, refusing a pickle that makes too many.
    fn make(&mut self, count: usize) -> Result<(), String> {
        self.made += count;
        if self.made > MAX_VALUES {
            return Err(format!(
                "data.pkl makes more than {MAX_VALUES} values: not a state dict"
            ));
        }
        Ok(())
    }

    /// `items` as a container, refusing one nested deeper than [`MAX_DEPTH`].
    fn container(&self, items: &[&Value]) -> Result<(), String> {
        if items.iter().any(|v| v.depth() >= MAX_DEPTH) {
            return Err(format!(
                "data.pkl nests containers more than {MAX_DEPTH} deep at byte {}: not a state dict",
                self.at
            ));
        }
        Ok(())
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let bytes: &'a [u8] = self.bytes;
        let out = bytes
            .get(self.at..self.at + n)
            .ok_or_else(|| format!("data.pkl ends early at byte {}", self.at))?;
        self.at += n;
        Ok(out)
    }

    fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn line(&mut self) -> Result<String, String> {
        let rest = &self.bytes[self.at..];
        let end = memchr::memchr(b'\n', rest).ok_or("data.pkl: a GLOBAL without its newline")?;
        let text = String::from_utf8_lossy(&rest[..end]).into_owned();
        self.at += end + 1;
        Ok(text)
    }

    fn pop(&mut self) -> Result<Value, String> {
        self.stack
            .pop()
            .ok_or_else(|| format!("data.pkl pops an empty stack at byte {}", self.at))
    }

    fn pop_mark(&mut self) -> Result<Vec<Value>, String> {
        let mark = self
            .marks
            .pop()
            .ok_or_else(|| format!("data.pkl: no MARK before byte {}", self.at))?;
        if mark > self.stack.len() {
            return Err(format!(
                "data.pkl: a MARK past the stack at byte {}",
                self.at
            ));
        }
        Ok(self.stack.split_off(mark))
    }

    fn top(&mut self) -> Result<&mut Value, String> {
        let at = self.at;
        self.stack
            .last_mut()
            .ok_or_else(|| format!("data.pkl: an empty stack at byte {at}"))
    }

    pub(super) fn run(mut self) -> Result<Value, String> {
        loop {
            let at = self.at;
            let op = self.take(1)?[0];
            self.make(1)?;
            match op {
                0x80 => {
                    self.take(1)?;
                }
                0x95 => {
                    self.take(8)?;
                }
                b'.' => return self.pop(),
                b'(' => self.marks.push(self.stack.len()),
                b'}' => self.stack.push(Value::Dict(Vec::new())),
                b']' => self.stack.push(Value::List(Vec::new())),
                b')' => self.stack.push(Value::Tuple(Vec::new())),
                b'N' => self.stack.push(Value::None),
                0x88 | 0x89 => self.stack.push(Value::Bool),
                b'K' => {
                    let n = self.take(1)?[0];
                    self.stack.push(Value::Int(i64::from(n)));
                }
                b'M' => {
                    let b = self.take(2)?;
                    self.stack
                        .push(Value::Int(i64::from(u16::from_le_bytes([b[0], b[1]]))));
                }
                b'J' => {
                    let n = self.u32()? as i32;
                    self.stack.push(Value::Int(i64::from(n)));
                }
                0x8a => {
                    let n = self.take(1)?[0] as usize;
                    let b = self.take(n)?;
                    if n > 8 {
                        return Err(format!("data.pkl: a {n}-byte integer at byte {at}"));
                    }
                    let mut wide = [if b.last().is_some_and(|x| x & 0x80 != 0) {
                        0xff
                    } else {
                        0
                    }; 8];
                    wide[..n].copy_from_slice(b);
                    self.stack.push(Value::Int(i64::from_le_bytes(wide)));
                }
                b'X' | 0x8c => {
                    let n = if op == b'X' {
                        self.u32()? as usize
                    } else {
                        self.take(1)?[0] as usize
                    };
                    let text = std::str::from_utf8(self.take(n)?).map_err(|_| {
                        format!("data.pkl: a string that is not UTF-8 at byte {at}")
                    })?;
                    self.stack.push(Value::Str(text.to_string()));
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.stack.push(Value::Global(module, name));
                }
                b'q' => {
                    let key = u32::from(self.take(1)?[0]);
                    let value = self.top()?.clone();
                    self.memo.insert(key, value);
                }
                b'r' => {
                    let key = self.u32()?;
                    let value = self.top()?.clone();
                    self.memo.insert(key, value);
                }
                0x94 => {
                    let key = self.memo.len() as u32;
                    let value = self.top()?.clone();
                    self.memo.insert(key, value);
                }
                b'h' | b'j' => {
                    let key = if op == b'h' {
                        u32::from(self.take(1)?[0])
                    } else {
                        self.u32()?
                    };
                    // A memo value holds at most the values made so far, so its copy is bounded
                    // before it is counted.
                    let value = self
                        .memo
                        .get(&key)
                        .cloned()
                        .ok_or_else(|| format!("data.pkl: memo {key} unset at byte {at}"))?;
                    self.make(value.count())?;
                    self.stack.push(value);
                }
                b't' => {
                    let items = self.pop_mark()?;
                    self.container(&items.iter().collect::<Vec<_>>())?;
                    self.stack.push(Value::Tuple(items));
                }
                0x85..=0x87 => {
                    let n = usize::from(op - 0x84);
                    if self.stack.len() < n {
                        return Err(format!("data.pkl: TUPLE{n} on a short stack at byte {at}"));
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    self.container(&items.iter().collect::<Vec<_>>())?;
                    self.stack.push(Value::Tuple(items));
                }
                b's' | b'u' => {
                    let items = if op == b's' {
                        let value = self.pop()?;
                        let key = self.pop()?;
                        vec![key, value]
                    } else {
                        self.pop_mark()?
                    };
                    self.container(&items.iter().collect::<Vec<_>>())?;
                    let Value::Dict(dict) = self.top()? else {
                        return Err(format!("data.pkl: SETITEMS on a non-dict at byte {at}"));
                    };
                    let mut items = items.into_iter();
                    while let (Some(k), Some(v)) = (items.next(), items.next()) {
                        dict.push((k, v));
                    }
                }
                b'a' | b'e' => {
                    let items = if op == b'a' {
                        vec![self.pop()?]
                    } else {
                        self.pop_mark()?
                    };
                    self.container(&items.iter().collect::<Vec<_>>())?;
                    let Value::List(list) = self.top()? else {
                        return Err(format!("data.pkl: APPENDS on a non-list at byte {at}"));
                    };
                    list.extend(items);
                }
                b'b' => {
                    // BUILD sets an object's state; the objects read here (an empty OrderedDict
                    // of hooks) carry none that matters.
                    self.pop()?;
                }
                b'Q' => {
                    let id = self.pop()?;
                    self.stack.push(persistent_storage(id)?);
                }
                b'R' => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    self.stack.push(reduce(callable, args)?);
                }
                other => {
                    return Err(format!(
                        "data.pkl: pickle opcode 0x{other:02x} at byte {at} is not one torch.save \
                         writes for a state dict"
                    ));
                }
            }
        }
    }
}

/// The storage that a persistent id `('storage', torch.<Type>Storage, key, location, numel)`
/// names.
fn persistent_storage(id: Value) -> Result<Value, String> {
    let Value::Tuple(items) = id else {
        return Err(format!("a persistent id is {}, not a tuple", id.kind()));
    };
    match items.as_slice() {
        [
            Value::Str(tag),
            Value::Global(module, class),
            Value::Str(key),
            _,
            numel,
        ] if tag == "storage" && module == "torch" => {
            let dtype = PthDtype::from_storage(class).ok_or_else(|| {
                format!("storage {key} is torch.{class}; only float32, float16, bfloat16 and float64 tensors are read")
            })?;
            Ok(Value::Storage(Storage {
                dtype,
                key: key.clone(),
                numel: numel.usize("a storage's size")?,
            }))
        }
        _ => Err(format!(
            "a persistent id {items:?} is not a torch storage ('storage', torch.<Type>Storage, key, \
             location, size)"
        )),
    }
}

/// The callables a state dict's pickle calls: tensor and parameter rebuilding, OrderedDict.
fn reduce(callable: Value, args: Value) -> Result<Value, String> {
    let Value::Global(module, name) = &callable else {
        return Err(format!("REDUCE calls {}, not a global", callable.kind()));
    };
    let Value::Tuple(args) = args else {
        return Err(format!("{module}.{name} gets {}, not a tuple", args.kind()));
    };
    match (module.as_str(), name.as_str()) {
        ("collections", "OrderedDict") if args.is_empty() => Ok(Value::Dict(Vec::new())),
        ("torch._utils", "_rebuild_tensor_v2") if args.len() >= 4 => {
            let Value::Storage(storage) = &args[0] else {
                return Err(format!("a tensor's storage is {}", args[0].kind()));
            };
            Ok(Value::Tensor(TensorView {
                storage: storage.clone(),
                offset: args[1].usize("a tensor's storage offset")?,
                shape: args[2].sizes("a tensor's size")?,
                strides: args[3].sizes("a tensor's stride")?,
            }))
        }
        ("torch._utils", "_rebuild_parameter") if !args.is_empty() => Ok(args[0].clone()),
        _ => Err(format!(
            "data.pkl calls {module}.{name}, which a state dict of tensors does not; save \
             model.state_dict() (a dict of tensors) with torch.save"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::Unpickler;

    #[test]
    fn other_callables_deep_nesting_and_doubling_copies_are_refused() {
        let evil = b"\x80\x02cos\nsystem\nX\x02\x00\x00\x00lsR.";
        let err = Unpickler::new(evil).run().unwrap_err();
        assert!(err.contains("os.system"), "{err}");
        let mut deep = b"\x80\x02N".to_vec();
        deep.extend(std::iter::repeat_n(0x85, 100));
        deep.push(b'.');
        let err = Unpickler::new(&deep).run().unwrap_err();
        assert!(err.contains("nests containers more than 32 deep"), "{err}");
        let mut doubling = b"\x80\x02]q\x00".to_vec();
        for _ in 0..40 {
            doubling.extend_from_slice(b"h\x00h\x00\x86q\x00");
        }
        doubling.push(b'.');
        let err = Unpickler::new(&doubling).run().unwrap_err();
        assert!(err.contains("more than"), "{err}");
    }
}
