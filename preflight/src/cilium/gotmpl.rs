//! The part of Helm's template language a chart's `fail` rules are written in: enough to find
//! every `{{ fail … }}` in a template (templates/validate.yaml), the `if`/`else`/`range`
//! conditions that lead to it, and to evaluate them against values as Helm would. Not a template
//! renderer: text outside actions is ignored, and anything this evaluator does not know (a
//! function outside the Sprig subset below, `include`, the cluster's `.Capabilities`) makes the
//! answer "could not tell" with the template line, never a guess.
//!
//! Semantics followed (Go text/template and Helm): a value is false when it is false, 0, nil or
//! an empty string, list or map; `and`/`or` return one of their arguments and stop at the first
//! that decides; a missing map key is nil. Logic over "could not tell" is three-valued: `and`
//! with a false argument is false whatever the unknown ones are.
use std::collections::BTreeMap;

use serde_json::{Map, Number, Value};

/// Most nested `if`/`range` blocks and parenthesised pipelines followed; deeper is an error.
const MAX_DEPTH: usize = 64;
/// Most actions read from one template; a bigger file is refused.
const MAX_ACTIONS: usize = 100_000;

/// One step on the way to a `fail`: a condition that must hold (or must not, for the earlier
/// branches of an `else`), or a `range` whose items are tried in turn.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Step {
    /// 1-based line of the action in the template.
    pub line: usize,
    /// The action's pipeline as written (`and .Values.a (not .Values.b)`).
    pub expr: String,
    #[serde(default)]
    pub kind: StepKind,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StepKind {
    /// `if`/`else if`/`with`: the pipeline must be true.
    #[default]
    If,
    /// An earlier branch of an `if … else`: the pipeline must be false.
    Not,
    /// `range`: the rest runs once per item, with `.` bound to it.
    Range,
}

/// A `fail` and what leads to it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FailRule {
    /// 1-based line of the `fail`.
    pub line: usize,
    pub steps: Vec<Step>,
    /// The `fail` argument as written: a string literal or a `printf` pipeline.
    pub message: String,
}

/// What a rule says about some values.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// The conditions hold: Helm fails with this message.
    Fails(String),
    /// A condition is false: the rule does not apply.
    Passes,
    /// A condition could not be evaluated: why, and at which line.
    CouldNotTell { line: usize, why: String },
}

/// A template error (bad syntax); names the line.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct TemplateError {
    pub line: usize,
    pub message: String,
}

// ---------------------------------------------------------------------------------------------
// Finding the rules.

/// The `{{ … }}` actions of a template with their line, comments dropped.
fn actions(text: &str) -> Result<Vec<(usize, String)>, TemplateError> {
    let mut out = Vec::new();
    let mut rest = text;
    let mut line = 1;
    while let Some(start) = rest.find("{{") {
        line += rest[..start].matches('\n').count();
        let after = &rest[start + 2..];
        let Some(end) = find_close(after) else {
            return Err(TemplateError {
                line,
                message: "unclosed action: `{{` without `}}`".into(),
            });
        };
        let inner = &after[..end];
        let body = inner.trim_start_matches('-').trim_end_matches('-').trim();
        if !body.starts_with("/*") {
            out.push((line, body.to_string()));
            if out.len() > MAX_ACTIONS {
                return Err(TemplateError {
                    line,
                    message: format!("more than {MAX_ACTIONS} actions"),
                });
            }
        }
        line += inner.matches('\n').count();
        rest = &after[end + 2..];
    }
    Ok(out)
}

/// The `}}` that closes an action, skipping string literals and comments.
fn find_close(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            b'`' => {
                i += 1;
                while i < b.len() && b[i] != b'`' {
                    i += 1;
                }
            }
            b'/' if s[i..].starts_with("/*") => {
                i += s[i..].find("*/").map_or(b.len(), |e| e + 1);
            }
            b'}' if s[i..].starts_with("}}") => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

/// Every `fail` in a template with the steps that lead to it.
pub fn fail_rules(text: &str) -> Result<Vec<FailRule>, TemplateError> {
    // An open block: its kind, and the conditions of its earlier branches (for `else`).
    struct Open {
        kind: &'static str,
        line: usize,
        /// Steps added by this block (removed at `else`/`end`).
        pushed: usize,
        /// Earlier branch conditions, to negate in later branches.
        earlier: Vec<(usize, String)>,
    }
    let mut stack: Vec<Open> = Vec::new();
    let mut path: Vec<Step> = Vec::new();
    let mut rules = Vec::new();
    for (line, body) in actions(text)? {
        let (word, rest) = split_word(&body);
        match word {
            "if" | "with" | "range" => {
                if stack.len() >= MAX_DEPTH {
                    return Err(TemplateError {
                        line,
                        message: format!("blocks nested deeper than {MAX_DEPTH}"),
                    });
                }
                let kind = if word == "range" {
                    StepKind::Range
                } else {
                    StepKind::If
                };
                path.push(Step {
                    line,
                    expr: rest.to_string(),
                    kind,
                });
                stack.push(Open {
                    kind: if word == "range" { "range" } else { "if" },
                    line,
                    pushed: 1,
                    earlier: vec![(line, rest.to_string())],
                });
            }
            "else" => {
                let Some(open) = stack.last_mut() else {
                    return Err(TemplateError {
                        line,
                        message: "`else` outside a block".into(),
                    });
                };
                let keep = path.len() - open.pushed;
                path.truncate(keep);
                // A range's else runs when the list is empty: not followed.
                let (next, cond) = split_word(rest);
                let mut pushed = 0;
                if open.kind == "if" {
                    for (l, e) in &open.earlier {
                        path.push(Step {
                            line: *l,
                            expr: e.clone(),
                            kind: StepKind::Not,
                        });
                        pushed += 1;
                    }
                    if next == "if" || next == "with" {
                        path.push(Step {
                            line,
                            expr: cond.to_string(),
                            kind: StepKind::If,
                        });
                        pushed += 1;
                        open.earlier.push((line, cond.to_string()));
                    }
                } else {
                    path.push(Step {
                        line,
                        expr: "false".into(),
                        kind: StepKind::If,
                    });
                    pushed += 1;
                }
                open.pushed = pushed;
            }
            "end" => {
                let Some(open) = stack.pop() else {
                    return Err(TemplateError {
                        line,
                        message: "`end` without a block".into(),
                    });
                };
                path.truncate(path.len() - open.pushed);
            }
            "define" | "block" => {
                // A named template: its fails run only where it is included.
                stack.push(Open {
                    kind: "define",
                    line,
                    pushed: 1,
                    earlier: Vec::new(),
                });
                path.push(Step {
                    line,
                    expr: "false".into(),
                    kind: StepKind::If,
                });
            }
            _ => {
                if let Some(message) = fail_argument(&body) {
                    rules.push(FailRule {
                        line,
                        steps: path.clone(),
                        message,
                    });
                }
            }
        }
    }
    if let Some(open) = stack.last() {
        return Err(TemplateError {
            line: open.line,
            message: format!("`{}` block not closed with `end`", open.kind),
        });
    }
    Ok(rules)
}

fn split_word(s: &str) -> (&str, &str) {
    let s = s.trim();
    match s.find(|c: char| c.is_whitespace()) {
        Some(i) => (&s[..i], s[i..].trim()),
        None => (s, ""),
    }
}

/// `fail "text"`, `fail (printf …)`: the argument; None for an action without a fail.
fn fail_argument(body: &str) -> Option<String> {
    let (word, rest) = split_word(body);
    (word == "fail").then(|| rest.to_string())
}

// ---------------------------------------------------------------------------------------------
// Expressions.

#[derive(Debug, Clone, PartialEq)]
enum Expr {
    /// `.a.b` from the dot, `$.a.b` from the root, `$x.a` from a variable.
    Field {
        base: Base,
        path: Vec<String>,
    },
    Str(String),
    Num(f64),
    Bool(bool),
    Nil,
    /// A function call (arguments already include a piped value, last).
    Call(String, Vec<Expr>),
    /// `(pipeline).field`
    Sub(Box<Expr>, Vec<String>),
}

#[derive(Debug, Clone, PartialEq)]
enum Base {
    Dot,
    Root,
    Var(String),
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Field(Vec<String>),
    Var(String, Vec<String>),
    Str(String),
    Num(f64),
    Ident(String),
    LParen,
    RParen,
    Pipe,
    Dollar,
}

fn tokens(s: &str) -> Result<Vec<Tok>, String> {
    let mut out = Vec::new();
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    let ident = |chars: &[char], mut j: usize| {
        let start = j;
        while j < chars.len() && (chars[j].is_alphanumeric() || chars[j] == '_') {
            j += 1;
        }
        (chars[start..j].iter().collect::<String>(), j)
    };
    let fields = |chars: &[char], mut j: usize| {
        let mut path = Vec::new();
        while j < chars.len() && chars[j] == '.' {
            let (name, k) = ident(chars, j + 1);
            if name.is_empty() {
                break;
            }
            path.push(name);
            j = k;
        }
        (path, j)
    };
    while i < chars.len() {
        let c = chars[i];
        match c {
            c if c.is_whitespace() => i += 1,
            '(' => {
                out.push(Tok::LParen);
                i += 1;
            }
            ')' => {
                out.push(Tok::RParen);
                i += 1;
                if i < chars.len() && chars[i] == '.' {
                    let (path, j) = fields(&chars, i);
                    out.push(Tok::Field(path));
                    i = j;
                }
            }
            '|' => {
                out.push(Tok::Pipe);
                i += 1;
            }
            '.' => {
                let (path, j) = fields(&chars, i);
                i = if path.is_empty() { i + 1 } else { j };
                out.push(Tok::Field(path));
            }
            '$' => {
                let (name, j) = ident(&chars, i + 1);
                let (path, k) = fields(&chars, j);
                if name.is_empty() {
                    out.push(Tok::Dollar);
                    if !path.is_empty() {
                        out.push(Tok::Field(path));
                    }
                } else {
                    out.push(Tok::Var(name, path));
                }
                i = k;
            }
            '"' => {
                let mut text = String::new();
                i += 1;
                loop {
                    let Some(&c) = chars.get(i) else {
                        return Err("unterminated string".into());
                    };
                    i += 1;
                    match c {
                        '"' => break,
                        '\\' => {
                            let e = chars.get(i).copied().unwrap_or('\\');
                            i += 1;
                            text.push(match e {
                                'n' => '\n',
                                't' => '\t',
                                other => other,
                            });
                        }
                        other => text.push(other),
                    }
                }
                out.push(Tok::Str(text));
            }
            '`' => {
                let start = i + 1;
                let end = chars[start..]
                    .iter()
                    .position(|&c| c == '`')
                    .ok_or("unterminated raw string")?;
                out.push(Tok::Str(chars[start..start + end].iter().collect()));
                i = start + end + 1;
            }
            c if c.is_ascii_digit()
                || (c == '-' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) =>
            {
                let start = i;
                i += 1;
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                    i += 1;
                }
                let text: String = chars[start..i].iter().collect();
                let n = text
                    .parse::<f64>()
                    .map_err(|_| format!("not a number: {text}"))?;
                out.push(Tok::Num(n));
            }
            c if c.is_alphabetic() || c == '_' => {
                let (name, j) = ident(&chars, i);
                out.push(Tok::Ident(name));
                i = j;
            }
            ':' | '=' => return Err("variable assignments are not followed".into()),
            other => return Err(format!("unexpected {other:?}")),
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    /// pipeline := command ('|' command)*
    fn pipeline(&mut self) -> Result<Expr, String> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(format!("nested deeper than {MAX_DEPTH}"));
        }
        let mut expr = self.command(None)?;
        while self.peek() == Some(&Tok::Pipe) {
            self.pos += 1;
            expr = self.command(Some(expr))?;
        }
        self.depth -= 1;
        Ok(expr)
    }

    /// command := operand+ ; a function name takes the rest as arguments (and the piped
    /// value last).
    fn command(&mut self, piped: Option<Expr>) -> Result<Expr, String> {
        let mut operands = Vec::new();
        while let Some(t) = self.peek() {
            if matches!(t, Tok::Pipe | Tok::RParen) {
                break;
            }
            operands.push(self.operand()?);
        }
        let mut it = operands.into_iter();
        let Some(head) = it.next() else {
            return Err("empty command".into());
        };
        let mut args: Vec<Expr> = it.collect();
        match head {
            Expr::Call(name, first) if first.is_empty() => {
                args.extend(piped);
                Ok(Expr::Call(name, args))
            }
            // `.Capabilities.APIVersions.Has "x"`: a method call with arguments.
            Expr::Field { base, path } if !args.is_empty() || piped.is_some() => {
                args.extend(piped);
                Ok(Expr::Call(
                    format!("method:{}", path.join(".")),
                    std::iter::once(Expr::Field {
                        base,
                        path: Vec::new(),
                    })
                    .chain(args)
                    .collect(),
                ))
            }
            other if args.is_empty() && piped.is_none() => Ok(other),
            _ => Err("a value cannot take arguments".into()),
        }
    }

    fn operand(&mut self) -> Result<Expr, String> {
        let t = self.toks.get(self.pos).cloned().ok_or("missing operand")?;
        self.pos += 1;
        Ok(match t {
            Tok::Field(path) => Expr::Field {
                base: Base::Dot,
                path,
            },
            Tok::Dollar => match self.peek().cloned() {
                Some(Tok::Field(path)) => {
                    self.pos += 1;
                    Expr::Field {
                        base: Base::Root,
                        path,
                    }
                }
                _ => Expr::Field {
                    base: Base::Root,
                    path: Vec::new(),
                },
            },
            Tok::Var(name, path) => Expr::Field {
                base: Base::Var(name),
                path,
            },
            Tok::Str(s) => Expr::Str(s),
            Tok::Num(n) => Expr::Num(n),
            Tok::Ident(name) => match name.as_str() {
                "true" => Expr::Bool(true),
                "false" => Expr::Bool(false),
                "nil" => Expr::Nil,
                _ => Expr::Call(name, Vec::new()),
            },
            Tok::LParen => {
                let inner = self.pipeline()?;
                if self.peek() != Some(&Tok::RParen) {
                    return Err("missing `)`".into());
                }
                self.pos += 1;
                match self.peek().cloned() {
                    Some(Tok::Field(path)) => {
                        self.pos += 1;
                        Expr::Sub(Box::new(inner), path)
                    }
                    _ => inner,
                }
            }
            Tok::RParen | Tok::Pipe => return Err("unexpected `)` or `|`".into()),
        })
    }
}

fn parse(text: &str) -> Result<Expr, String> {
    let mut p = Parser {
        toks: tokens(text)?,
        pos: 0,
        depth: 0,
    };
    let e = p.pipeline()?;
    if p.pos != p.toks.len() {
        return Err("unexpected text after the pipeline".into());
    }
    Ok(e)
}

// ---------------------------------------------------------------------------------------------
// Values paths a rule reads (so generated chart data can keep their defaults).

/// The dotted `.Values` paths an expression reads: `.Values.a.b`, `dig "a" "b" _ .Values.AsMap`,
/// `hasKey .Values.a "k"`, `index .Values.a "k"`. Unparsable expressions read nothing known.
pub fn values_paths(expr: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    if let Ok(e) = parse(expr) {
        collect_paths(&e, &mut out);
    }
    out
}

fn values_path_of(e: &Expr) -> Option<Vec<String>> {
    match e {
        Expr::Field { base, path } if !matches!(base, Base::Var(_)) => {
            let rest = path.strip_prefix(&["Values".to_string()])?;
            Some(
                rest.iter()
                    .filter(|p| p.as_str() != "AsMap")
                    .cloned()
                    .collect(),
            )
        }
        _ => None,
    }
}

fn collect_paths(e: &Expr, out: &mut Vec<Vec<String>>) {
    match e {
        Expr::Field { .. } => {
            if let Some(p) = values_path_of(e)
                && !p.is_empty()
            {
                out.push(p);
            }
        }
        Expr::Call(name, args) => {
            let strings = |args: &[Expr]| -> Option<Vec<String>> {
                args.iter()
                    .map(|a| match a {
                        Expr::Str(s) => Some(s.clone()),
                        _ => None,
                    })
                    .collect()
            };
            match (name.as_str(), args.as_slice()) {
                ("dig", [keys @ .., _default, base]) => {
                    if let (Some(mut p), Some(keys)) = (values_path_of(base), strings(keys)) {
                        p.extend(keys);
                        out.push(p);
                        return;
                    }
                }
                ("hasKey" | "index", [base, keys @ ..]) => {
                    if let (Some(mut p), Some(keys)) = (values_path_of(base), strings(keys)) {
                        p.extend(keys);
                        out.push(p);
                        return;
                    }
                }
                _ => {}
            }
            for a in args {
                collect_paths(a, out);
            }
        }
        Expr::Sub(inner, _) => collect_paths(inner, out),
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------------
// Evaluation.

/// A value, or why it could not be told.
type Val = Result<Value, String>;

/// What the templates see: `.Values` and nothing of the cluster.
pub struct Scope<'a> {
    pub values: &'a Value,
}

struct Env<'a> {
    root: Value,
    dot: Value,
    /// Outside `range`/`with` the dot is the root: `.Capabilities`, `.Release` are the
    /// cluster's.
    dot_is_root: bool,
    vars: &'a BTreeMap<String, Value>,
}

/// Go template truth.
pub fn truth(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(m) => !m.is_empty(),
    }
}

fn num(f: f64) -> Value {
    if f.fract() == 0.0 && f.abs() < 9.0e15 {
        Value::Number(Number::from(f as i64))
    } else {
        Number::from_f64(f).map_or(Value::Null, Value::Number)
    }
}

/// Go's `fmt` `%v` of a value, as Helm prints it.
pub fn display(v: &Value) -> String {
    match v {
        Value::Null => "<nil>".into(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Array(a) => format!("[{}]", a.iter().map(display).collect::<Vec<_>>().join(" ")),
        Value::Object(m) => format!(
            "map[{}]",
            m.iter()
                .map(|(k, v)| format!("{k}:{}", display(v)))
                .collect::<Vec<_>>()
                .join(" ")
        ),
    }
}

fn as_f64(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::Bool(b) => Some(f64::from(u8::from(*b))),
        Value::String(s) => s.trim().parse().ok(),
        Value::Null => Some(0.0),
        _ => None,
    }
}

fn field(v: &Value, path: &[String]) -> Value {
    let mut cur = v;
    for p in path {
        match cur {
            // Helm's Values type: AsMap is the map itself.
            Value::Object(_) if p == "AsMap" => continue,
            Value::Object(m) => match m.get(p) {
                Some(next) => cur = next,
                None => return Value::Null,
            },
            _ => return Value::Null,
        }
    }
    cur.clone()
}

impl Env<'_> {
    fn eval(&self, e: &Expr) -> Val {
        match e {
            Expr::Str(s) => Ok(Value::String(s.clone())),
            Expr::Num(n) => Ok(num(*n)),
            Expr::Bool(b) => Ok(Value::Bool(*b)),
            Expr::Nil => Ok(Value::Null),
            Expr::Field { base, path } => {
                let start = match base {
                    Base::Dot => &self.dot,
                    Base::Root => &self.root,
                    Base::Var(name) => self
                        .vars
                        .get(name)
                        .ok_or_else(|| format!("variable ${name} is not known here"))?,
                };
                let at_root =
                    matches!(base, Base::Root) || (matches!(base, Base::Dot) && self.dot_is_root);
                if let Some(first) = path.first()
                    && at_root
                    && first != "Values"
                {
                    return Err(format!(
                        ".{} is about the cluster or the release, which a node cannot see",
                        path.join(".")
                    ));
                }
                Ok(field(start, path))
            }
            Expr::Sub(inner, path) => Ok(field(&self.eval(inner)?, path)),
            Expr::Call(name, args) => self.call(name, args),
        }
    }

    fn call(&self, name: &str, args: &[Expr]) -> Val {
        // The short-circuiting ones evaluate their arguments themselves.
        match name {
            "and" | "or" => {
                let want = name == "or";
                let mut unknown = None;
                let mut last = Value::Bool(!want);
                for a in args {
                    match self.eval(a) {
                        Ok(v) if truth(&v) == want => return Ok(v),
                        Ok(v) => last = v,
                        Err(why) => {
                            unknown.get_or_insert(why);
                        }
                    }
                }
                return match unknown {
                    Some(why) => Err(why),
                    None => Ok(last),
                };
            }
            "default" => {
                // default DEFAULT VALUE: VALUE unless empty.
                let [d, v] = args else {
                    return Err("default takes two arguments".into());
                };
                let v = self.eval(v)?;
                return if truth(&v) { Ok(v) } else { self.eval(d) };
            }
            "ternary" => {
                let [a, b, c] = args else {
                    return Err("ternary takes three arguments".into());
                };
                return if truth(&self.eval(c)?) {
                    self.eval(a)
                } else {
                    self.eval(b)
                };
            }
            _ => {}
        }
        let v: Vec<Value> = args
            .iter()
            .map(|a| self.eval(a))
            .collect::<Result<_, _>>()?;
        let s = |i: usize| v.get(i).map(display).unwrap_or_default();
        let n = |i: usize| v.get(i).and_then(as_f64);
        Ok(match (name, v.as_slice()) {
            ("not", [a]) => Value::Bool(!truth(a)),
            ("eq", [a, rest @ ..]) if !rest.is_empty() => {
                Value::Bool(rest.iter().any(|b| equal(a, b)))
            }
            ("ne", [a, b]) => Value::Bool(!equal(a, b)),
            ("lt" | "le" | "gt" | "ge", [a, b]) => {
                let ord = match (as_f64(a), as_f64(b)) {
                    (Some(x), Some(y)) => x.partial_cmp(&y),
                    _ => Some(display(a).cmp(&display(b))),
                }
                .ok_or("incomparable values")?;
                Value::Bool(match name {
                    "lt" => ord.is_lt(),
                    "le" => ord.is_le(),
                    "gt" => ord.is_gt(),
                    _ => ord.is_ge(),
                })
            }
            ("len", [a]) => num(match a {
                Value::String(s) => s.chars().count() as f64,
                Value::Array(x) => x.len() as f64,
                Value::Object(m) => m.len() as f64,
                Value::Null => 0.0,
                _ => return Err("len of a number or boolean".into()),
            }),
            ("int" | "int64", [_]) => num(n(0).unwrap_or(0.0).trunc()),
            ("float64", [_]) => num(n(0).unwrap_or(0.0)),
            ("toString", [a]) => Value::String(display(a)),
            ("quote", [a]) => Value::String(format!("{:?}", display(a))),
            ("lower", [_]) => Value::String(s(0).to_lowercase()),
            ("upper", [_]) => Value::String(s(0).to_uppercase()),
            ("trim", [_]) => Value::String(s(0).trim().to_string()),
            ("trimPrefix", [_, _]) => {
                Value::String(s(1).strip_prefix(&s(0)).unwrap_or(&s(1)).to_string())
            }
            ("trimSuffix", [_, _]) => {
                Value::String(s(1).strip_suffix(&s(0)).unwrap_or(&s(1)).to_string())
            }
            ("contains", [_, _]) => Value::Bool(s(1).contains(&s(0))),
            ("hasPrefix", [_, _]) => Value::Bool(s(1).starts_with(&s(0))),
            ("hasSuffix", [_, _]) => Value::Bool(s(1).ends_with(&s(0))),
            ("empty", [a]) => Value::Bool(!truth(a)),
            ("coalesce", items) => items
                .iter()
                .find(|x| truth(x))
                .cloned()
                .unwrap_or(Value::Null),
            ("list", items) => Value::Array(items.to_vec()),
            ("has", [needle, Value::Array(list)]) => {
                Value::Bool(list.iter().any(|x| equal(x, needle)))
            }
            ("has", [_, _]) => Value::Bool(false),
            ("hasKey", [Value::Object(m), k]) => Value::Bool(m.contains_key(&display(k))),
            ("hasKey", [_, _]) => Value::Bool(false),
            ("dig", [keys @ .., default, base]) if !keys.is_empty() => {
                let mut cur = base.clone();
                for k in keys {
                    cur = match cur {
                        Value::Object(ref m) => match m.get(&display(k)) {
                            Some(x) => x.clone(),
                            None => return Ok(default.clone()),
                        },
                        _ => return Ok(default.clone()),
                    };
                }
                cur
            }
            ("index", [base, keys @ ..]) => {
                let mut cur = base.clone();
                for k in keys {
                    cur = match (&cur, k) {
                        (Value::Object(m), k) => m.get(&display(k)).cloned().unwrap_or(Value::Null),
                        (Value::Array(a), k) => {
                            let i = as_f64(k).ok_or("index into a list with a non-number")?;
                            a.get(i as usize).cloned().ok_or("index out of range")?
                        }
                        (Value::Null, _) => Value::Null,
                        _ => return Err("index of a scalar".into()),
                    };
                }
                cur
            }
            ("kindIs", [kind, a]) => Value::Bool(kind_of(a) == display(kind)),
            ("kindOf", [a]) => Value::String(kind_of(a).into()),
            ("regexMatch", [re, _]) => Value::Bool(regex(re)?.is_match(&s(1))),
            ("regexReplaceAll", [re, _, _]) => {
                Value::String(regex(re)?.replace_all(&s(1), s(2).as_str()).into_owned())
            }
            ("semverCompare", [constraint, version]) => {
                Value::Bool(semver_compare(&display(constraint), &display(version))?)
            }
            ("printf", [format, rest @ ..]) => Value::String(printf(&display(format), rest)),
            ("method:Capabilities.APIVersions.Has", [_, api]) => {
                return Err(format!(
                    "whether the cluster serves {} (.Capabilities.APIVersions) is not visible \
                     from a node",
                    display(api)
                ));
            }
            ("include" | "tpl" | "lookup" | "required", _) => {
                return Err(format!(
                    "`{name}` (a named template or the cluster) is not evaluated here"
                ));
            }
            _ => {
                return Err(format!(
                    "`{name}` with these arguments is not evaluated here"
                ));
            }
        })
    }
}

fn equal(a: &Value, b: &Value) -> bool {
    match (as_f64(a), as_f64(b), a, b) {
        (Some(x), Some(y), Value::Number(_), Value::Number(_)) => x == y,
        _ => a == b,
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "invalid",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float64",
        Value::Number(_) => "int64",
        Value::String(_) => "string",
        Value::Array(_) => "slice",
        Value::Object(_) => "map",
    }
}

fn regex(re: &Value) -> Result<regex::Regex, String> {
    regex::RegexBuilder::new(&display(re))
        .size_limit(1 << 20)
        .build()
        .map_err(|e| format!("regular expression: {e}"))
}

/// Masterminds semver constraints as Helm's `semverCompare` takes them: comma-separated
/// comparisons (`>=1.16`, `<0.9.0`), `||` between alternatives; versions without a patch are
/// completed with zeros. A version that is not one (`latest`) is an error in Helm too.
fn semver_compare(constraint: &str, version: &str) -> Result<bool, String> {
    let coerce = |v: &str| -> Result<semver::Version, String> {
        let v = v.trim().trim_start_matches('v');
        let (core, pre) = v.split_once('-').map_or((v, None), |(c, p)| (c, Some(p)));
        let mut parts: Vec<&str> = core.split('.').collect();
        while parts.len() < 3 {
            parts.push("0");
        }
        let text = match pre {
            Some(p) => format!("{}-{p}", parts.join(".")),
            None => parts.join("."),
        };
        semver::Version::parse(&text).map_err(|e| format!("{v:?} is not a version: {e}"))
    };
    let v = coerce(version)?;
    for alternative in constraint.split("||") {
        let mut all = true;
        for c in alternative
            .split(',')
            .map(str::trim)
            .filter(|c| !c.is_empty())
        {
            let op_len = c
                .find(|ch: char| ch.is_ascii_digit() || ch == 'v')
                .unwrap_or(0);
            let (op, want) = c.split_at(op_len);
            let want = coerce(want)?;
            let ok = match op.trim() {
                ">=" => v >= want,
                ">" => v > want,
                "<=" => v <= want,
                "<" => v < want,
                "=" | "" => v == want,
                "!=" => v != want,
                other => return Err(format!("semver operator {other:?} is not evaluated here")),
            };
            all &= ok;
        }
        if all {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Go's `fmt.Sprintf` for the verbs templates use (`%s`, `%v`, `%d`, `%q`, `%%`).
fn printf(format: &str, args: &[Value]) -> String {
    let mut out = String::new();
    let mut args = args.iter();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('%') => out.push('%'),
            Some('q') => out.push_str(&format!(
                "{:?}",
                args.next().map(display).unwrap_or_default()
            )),
            Some(verb) => match args.next() {
                Some(a) => out.push_str(&display(a)),
                None => out.push_str(&format!("%!{verb}(MISSING)")),
            },
            None => out.push('%'),
        }
    }
    out
}

impl FailRule {
    /// Judges `values` (the chart's defaults coalesced with the user's) as Helm would.
    pub fn judge(&self, values: &Value) -> Verdict {
        let mut root = Map::new();
        root.insert("Values".into(), values.clone());
        let root = Value::Object(root);
        let vars = BTreeMap::new();
        let env = Env {
            dot: root.clone(),
            root,
            dot_is_root: true,
            vars: &vars,
        };
        self.walk(&env, 0, None)
    }

    /// Steps from `from` on; `unknown` is the first step that could not be told so far: the
    /// rule then fails only "maybe", and a later step that is surely false still clears it.
    fn walk(&self, env: &Env, from: usize, unknown: Option<(usize, String)>) -> Verdict {
        let Some(step) = self.steps.get(from) else {
            if let Some((line, why)) = unknown {
                return Verdict::CouldNotTell { line, why };
            }
            return match parse(&self.message).and_then(|e| env.eval(&e)) {
                Ok(v) => Verdict::Fails(display(&v)),
                // The rule applies; only its text could not be rendered.
                Err(_) => Verdict::Fails(self.message.clone()),
            };
        };
        let value = match parse(&step.expr) {
            Ok(e) => env.eval(&e),
            Err(why) => Err(format!("cannot read `{}`: {why}", step.expr)),
        };
        let value = match value {
            Ok(v) => v,
            Err(why) if step.kind == StepKind::Range => {
                let unknown = unknown.unwrap_or((step.line, why));
                return Verdict::CouldNotTell {
                    line: unknown.0,
                    why: unknown.1,
                };
            }
            Err(why) => return self.walk(env, from + 1, unknown.or(Some((step.line, why)))),
        };
        match step.kind {
            StepKind::If if truth(&value) => self.walk(env, from + 1, unknown),
            StepKind::Not if !truth(&value) => self.walk(env, from + 1, unknown),
            StepKind::If | StepKind::Not => Verdict::Passes,
            StepKind::Range => {
                let items: Vec<Value> = match value {
                    Value::Array(a) => a,
                    Value::Object(m) => m.into_values().collect(),
                    Value::Null => Vec::new(),
                    other => vec![other],
                };
                let mut maybe = None;
                for item in items {
                    let inner = Env {
                        root: env.root.clone(),
                        dot: item,
                        dot_is_root: false,
                        vars: env.vars,
                    };
                    match self.walk(&inner, from + 1, unknown.clone()) {
                        Verdict::Fails(m) => return Verdict::Fails(m),
                        v @ Verdict::CouldNotTell { .. } => {
                            maybe.get_or_insert(v);
                        }
                        Verdict::Passes => {}
                    }
                }
                maybe.unwrap_or(Verdict::Passes)
            }
        }
    }

    /// The dotted `.Values` paths the rule reads (conditions and message).
    pub fn values_paths(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .steps
            .iter()
            .map(|s| s.expr.as_str())
            .chain([self.message.as_str()])
            .flat_map(values_paths)
            .map(|p| p.join("."))
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// Boolean values paths the rule tests with `not` on its way to the `fail`: setting one to
    /// true keeps the rule from applying (`not .Values.prometheus.serviceMonitor.trustCRDsExist`).
    pub fn escape_keys(&self) -> Vec<String> {
        let mut out = Vec::new();
        for step in &self.steps {
            let Ok(e) = parse(&step.expr) else { continue };
            let path = match (step.kind, &e) {
                (StepKind::If, Expr::Call(n, a)) if n == "not" && a.len() == 1 => {
                    values_path_of(&a[0])
                }
                (StepKind::Not, e) => values_path_of(e),
                _ => None,
            };
            if let Some(p) = path.filter(|p| !p.is_empty()) {
                out.push(p.join("."));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const TEMPLATE: &str = r#"{{/* validate deprecated options */}}
{{- if or
  (dig "encryption" "keyFile" "" .Values.AsMap)
  (dig "encryption" "mountPath" "" .Values.AsMap)
}}
  {{ fail "encryption.keyFile was removed" }}
{{- end }}
{{- if .Values.tunnel }}
  {{ fail "tunnel was removed" }}
{{- end }}
{{- if and .Values.hubble.ui.enabled (not .Values.hubble.ui.standalone.enabled) }}
  {{- if not .Values.hubble.relay.enabled }}
    {{ fail "Hubble UI requires .Values.hubble.relay.enabled=true" }}
  {{- end }}
{{- end }}
{{- if or (and .Values.prometheus.enabled .Values.prometheus.serviceMonitor.enabled) }}
  {{- if not (.Capabilities.APIVersions.Has "monitoring.coreos.com/v1") }}
      {{- if not .Values.prometheus.serviceMonitor.trustCRDsExist }}
          {{ fail "Service Monitor requires monitoring.coreos.com/v1 CRDs" }}
      {{- end }}
  {{- end }}
{{- end }}
{{- if .Values.clustermesh.useAPIServer }}
  {{- if ne .Values.identityAllocationMode "crd" }}
    {{ fail (printf "cannot be enabled with identityAllocationMode=%s" .Values.identityAllocationMode ) }}
  {{- end }}
{{- else if .Values.externalWorkloads.enabled }}
  {{ fail "external workloads" }}
{{- else }}
  {{- range .Values.extraEnv }}
    {{- if eq .name "KUBE_CLIENT_BACKOFF_BASE" }}
      {{ fail "duplicate env" }}
    {{- end }}
  {{- end }}
{{- end }}
{{- if semverCompare ">=1.16" (default "1.16" .Values.upgradeCompatibility) }}
{{- if gt (len .Values.cluster.name) 32 }}
  {{ fail "The cluster name is invalid" }}
{{- end }}
{{- end }}
{{- if and (eq .Values.cluster.name "default") (ne (int .Values.cluster.id) 0) }}
  {{ fail "default name with cluster.id" }}
{{- end }}
{{- if regexReplaceAll "@.*$" .Values.hubble.ui.backend.image.tag "" | trimPrefix "v" | semverCompare "<0.9.0" }}
  {{ fail "old UI" }}
{{- end }}
{{- if not (list "internal" "external" | has .Values.kvstoreMode) -}}
{{- fail "kvstoreMode must be internal or external" -}}
{{- end -}}
{{- if eq "true" (include "identityAllocationCRD" .) }}
  {{ fail "crd" }}
{{- end }}
"#;

    fn defaults() -> Value {
        json!({
            "hubble": {"ui": {"enabled": false, "standalone": {"enabled": false},
                              "backend": {"image": {"tag": "v0.13.1@sha256:abc"}}},
                       "relay": {"enabled": false}},
            "prometheus": {"enabled": false, "serviceMonitor": {"enabled": false, "trustCRDsExist": false}},
            "clustermesh": {"useAPIServer": false},
            "externalWorkloads": {"enabled": false},
            "identityAllocationMode": "crd",
            "extraEnv": [],
            "cluster": {"name": "default", "id": 0},
            "kvstoreMode": "internal",
            "encryption": {"enabled": false},
        })
    }

    fn judge(user: Value) -> Vec<(usize, Verdict)> {
        let mut v = defaults();
        crate::cilium::values::merge(&mut v, user);
        fail_rules(TEMPLATE)
            .unwrap()
            .iter()
            .map(|r| (r.line, r.judge(&v)))
            .filter(|(_, v)| *v != Verdict::Passes)
            .collect()
    }

    #[test]
    fn the_defaults_pass_except_what_cannot_be_told() {
        // include is not evaluated: reported with its line, nothing guessed.
        assert_eq!(
            judge(json!({})),
            [(
                51,
                Verdict::CouldNotTell {
                    line: 50,
                    why: "`include` (a named template or the cluster) is not evaluated here".into()
                }
            )]
        );
    }

    #[test]
    fn fails_name_the_chart_message_and_follow_nesting_else_and_range() {
        let fails = |user: Value| -> Vec<String> {
            judge(user)
                .into_iter()
                .filter_map(|(_, v)| match v {
                    Verdict::Fails(m) => Some(m),
                    _ => None,
                })
                .collect()
        };
        assert_eq!(
            fails(json!({"encryption": {"keyFile": "k"}})),
            ["encryption.keyFile was removed"]
        );
        assert_eq!(fails(json!({"tunnel": "disabled"})), ["tunnel was removed"]);
        assert!(
            fails(json!({"tunnel": ""})).is_empty(),
            "an empty string is false"
        );
        assert_eq!(
            fails(json!({"hubble": {"ui": {"enabled": true}}})),
            ["Hubble UI requires .Values.hubble.relay.enabled=true"]
        );
        assert!(
            fails(json!({"hubble": {"ui": {"enabled": true, "standalone": {"enabled": true}}}}))
                .is_empty()
        );
        assert_eq!(
            fails(
                json!({"clustermesh": {"useAPIServer": true}, "identityAllocationMode": "kvstore"})
            ),
            ["cannot be enabled with identityAllocationMode=kvstore"]
        );
        // else if / else: the earlier branch must be false.
        assert_eq!(
            fails(json!({"externalWorkloads": {"enabled": true}})),
            ["external workloads"]
        );
        assert!(
            fails(json!({"clustermesh": {"useAPIServer": true}, "externalWorkloads": {"enabled": true}}))
                .is_empty()
        );
        assert_eq!(
            fails(json!({"extraEnv": [{"name": "X"}, {"name": "KUBE_CLIENT_BACKOFF_BASE"}]})),
            ["duplicate env"]
        );
        assert_eq!(
            fails(json!({"cluster": {"name": "a".repeat(33)}})),
            ["The cluster name is invalid"]
        );
        assert!(
            fails(json!({"cluster": {"name": "a".repeat(33)}, "upgradeCompatibility": "1.15"}))
                .is_empty()
        );
        assert_eq!(
            fails(json!({"cluster": {"id": 3}})),
            ["default name with cluster.id"]
        );
        assert_eq!(
            fails(json!({"hubble": {"ui": {"backend": {"image": {"tag": "v0.8.5"}}}}})),
            ["old UI"]
        );
        assert_eq!(
            fails(json!({"kvstoreMode": "other"})),
            ["kvstoreMode must be internal or external"]
        );
    }

    #[test]
    fn the_cluster_api_is_could_not_tell_and_the_key_that_avoids_it_is_found() {
        let user = json!({"prometheus": {"enabled": true, "serviceMonitor": {"enabled": true}}});
        let got = judge(user.clone());
        assert!(
            got.iter().any(|(l, v)| *l == 19
                && matches!(v, Verdict::CouldNotTell { line: 17, why } if why.contains("monitoring.coreos.com/v1"))),
            "{got:?}"
        );
        let rules = fail_rules(TEMPLATE).unwrap();
        let sm = rules.iter().find(|r| r.line == 19).unwrap();
        assert_eq!(
            sm.escape_keys(),
            ["prometheus.serviceMonitor.trustCRDsExist"]
        );
        // Setting the key the chart reads makes the rule pass: no could-not-tell left.
        let mut trusted = defaults();
        crate::cilium::values::merge(&mut trusted, user);
        crate::cilium::values::merge(
            &mut trusted,
            json!({"prometheus": {"serviceMonitor": {"trustCRDsExist": true}}}),
        );
        // The Capabilities step comes first, but a later step is surely false: the rule passes.
        assert_eq!(sm.judge(&trusted), Verdict::Passes);
    }

    #[test]
    fn paths_read_by_rules_include_dig_haskey_and_index() {
        let rules = fail_rules(TEMPLATE).unwrap();
        let all: Vec<String> = rules.iter().flat_map(|r| r.values_paths()).collect();
        for p in [
            "encryption.keyFile",
            "tunnel",
            "hubble.ui.standalone.enabled",
            "extraEnv",
            "kvstoreMode",
        ] {
            assert!(all.contains(&p.to_string()), "{p}: {all:?}");
        }
        assert_eq!(
            values_paths(r#"hasKey .Values.bpf "tproxy""#),
            [vec!["bpf".to_string(), "tproxy".to_string()]]
        );
    }

    #[test]
    fn bad_templates_name_the_line() {
        assert_eq!(fail_rules("a\n{{ if .Values.x }}\n").unwrap_err().line, 2);
        assert_eq!(fail_rules("{{ end }}").unwrap_err().line, 1);
        assert_eq!(fail_rules("x\n\n{{ if").unwrap_err().line, 3);
        let deep = "{{ if .a }}".repeat(MAX_DEPTH + 1);
        assert!(fail_rules(&deep).is_err());
    }
}
