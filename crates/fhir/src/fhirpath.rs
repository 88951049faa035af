//! A FHIRPath subset: enough to evaluate every official R4 search-parameter expression of the
//! kinds string, token, date, number, quantity, reference and uri.
//!
//! Expressions are parsed once into an [`Expr`] and evaluated over a `serde_json::Value` holding a
//! resource. The result is a collection of [`Node`]s that borrow from the resource and carry the
//! FHIR type when the navigation revealed it (a choice element such as `valueQuantity` yields a
//! node of type `Quantity`).
//!
//! Supported:
//! - paths with array flattening, choice elements (`Observation.value` finds `valueQuantity`,
//!   `valueString`, …), a leading type name (`Patient.name`, `Resource.id`), indexers (`[0]`);
//! - literals: strings, numbers, `true`/`false`, `{}`; `$this`; `%resource`, `%rootResource`,
//!   `%context`;
//! - operators: `|`, `=`, `!=`, `~`, `!~`, `<`, `<=`, `>`, `>=`, `and`, `or`, `xor`, `implies`,
//!   `in`, `contains`, `is`, `as`;
//! - functions: `where`, `select`, `exists`, `all`, `empty`, `not`, `first`, `last`, `tail`,
//!   `count`, `ofType`, `as`, `is`, `resolve`, `extension`, `hasValue`.
//!
//! `resolve()` does not fetch anything: a `#id` reference resolves to the contained resource, any
//! other reference to a stub `{"resourceType": T, "id": id}` when its type is known (from the
//! reference text or `Reference.type`), which is what `where(resolve() is Patient)` needs.
//!
//! Evaluation never fails: type mismatches and other errors yield empty collections.
use std::borrow::Cow;
use std::collections::HashSet;

use serde_json::{Map, Value};

/// Why an expression could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FhirPathError {
    #[error("FHIRPath syntax error at offset {pos}: {message}")]
    Syntax { pos: usize, message: String },
    #[error("FHIRPath feature not supported at offset {pos}: {what}")]
    Unsupported { pos: usize, what: String },
}

/// A type named in `is`, `as`, `ofType(…)`: `Patient`, `FHIR.Quantity`, `System.String`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeSpec {
    pub namespace: Option<String>,
    pub name: String,
}

/// An environment variable (`%resource`, …). All of them denote the resource evaluated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Var {
    Resource,
    RootResource,
    Context,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    Union,
    Equal,
    NotEqual,
    Equivalent,
    NotEquivalent,
    Less,
    LessOrEqual,
    Greater,
    GreaterOrEqual,
    In,
    Contains,
    And,
    Or,
    Xor,
    Implies,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TypeOp {
    Is,
    As,
}

/// A function invocation with its (already parsed) arguments.
#[derive(Debug, Clone, PartialEq)]
pub enum Func {
    Where(Box<Expr>),
    Select(Box<Expr>),
    Exists(Option<Box<Expr>>),
    All(Box<Expr>),
    Empty,
    Not,
    First,
    Last,
    Tail,
    Count,
    OfType(TypeSpec),
    As(TypeSpec),
    Is(TypeSpec),
    Resolve,
    /// `extension('url')`: the extensions with that url.
    Extension(String),
    HasValue,
}

/// A parsed FHIRPath expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// A string, number or boolean literal.
    Literal(Value),
    /// `{}`
    EmptySet,
    /// `$this`
    This,
    Var(Var),
    /// `base.name`, or `name` on the input collection when `base` is `None`.
    Child {
        base: Option<Box<Expr>>,
        name: String,
    },
    /// `base[index]`
    Index {
        base: Box<Expr>,
        index: Box<Expr>,
    },
    /// `base.func(…)`, or `func(…)` on the input collection when `base` is `None`.
    Call {
        base: Option<Box<Expr>>,
        func: Func,
    },
    Binary {
        op: BinOp,
        left: Box<Expr>,
        right: Box<Expr>,
    },
    /// `base is T`, `base as T`
    Type {
        op: TypeOp,
        base: Box<Expr>,
        ty: TypeSpec,
    },
}

// ---------------------------------------------------------------------------------------------
// Lexer

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    /// A backtick-delimited identifier: never a keyword.
    QuotedIdent(String),
    Str(String),
    Number(String),
    /// `%name` or `%'name'`
    Env(String),
    /// `$this`, `$index`, `$total`
    Special(String),
    Dot,
    Comma,
    LParen,
    RParen,
    LBracket,
    RBracket,
    LBrace,
    RBrace,
    Pipe,
    Eq,
    Ne,
    Tilde,
    NotTilde,
    Lt,
    Le,
    Gt,
    Ge,
}

fn syntax(pos: usize, message: impl Into<String>) -> FhirPathError {
    FhirPathError::Syntax {
        pos,
        message: message.into(),
    }
}

fn unsupported(pos: usize, what: impl Into<String>) -> FhirPathError {
    FhirPathError::Unsupported {
        pos,
        what: what.into(),
    }
}

fn lex(input: &str) -> Result<Vec<(Tok, usize)>, FhirPathError> {
    let bytes = input.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        let b = bytes[i];
        match b {
            b' ' | b'\t' | b'\r' | b'\n' => {
                i += 1;
                continue;
            }
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                match input[i + 2..].find("*/") {
                    Some(end) => i += 2 + end + 2,
                    None => return Err(syntax(start, "unterminated comment")),
                }
                continue;
            }
            b'.' => {
                out.push((Tok::Dot, start));
                i += 1;
            }
            b',' => {
                out.push((Tok::Comma, start));
                i += 1;
            }
            b'(' => {
                out.push((Tok::LParen, start));
                i += 1;
            }
            b')' => {
                out.push((Tok::RParen, start));
                i += 1;
            }
            b'[' => {
                out.push((Tok::LBracket, start));
                i += 1;
            }
            b']' => {
                out.push((Tok::RBracket, start));
                i += 1;
            }
            b'{' => {
                out.push((Tok::LBrace, start));
                i += 1;
            }
            b'}' => {
                out.push((Tok::RBrace, start));
                i += 1;
            }
            b'|' => {
                out.push((Tok::Pipe, start));
                i += 1;
            }
            b'=' => {
                out.push((Tok::Eq, start));
                i += 1;
            }
            b'~' => {
                out.push((Tok::Tilde, start));
                i += 1;
            }
            b'!' => match bytes.get(i + 1) {
                Some(b'=') => {
                    out.push((Tok::Ne, start));
                    i += 2;
                }
                Some(b'~') => {
                    out.push((Tok::NotTilde, start));
                    i += 2;
                }
                _ => return Err(syntax(start, "expected `!=` or `!~`")),
            },
            b'<' => {
                if bytes.get(i + 1) == Some(&b'=') {
                    out.push((Tok::Le, start));
                    i += 2;
                } else {
                    out.push((Tok::Lt, start));
                    i += 1;
                }
            }
            b'>' => {
                if bytes.get(i + 1) == Some(&b'=') {
                    out.push((Tok::Ge, start));
                    i += 2;
                } else {
                    out.push((Tok::Gt, start));
                    i += 1;
                }
            }
            b'\'' => {
                let (s, next) = lex_quoted(input, i, b'\'')?;
                out.push((Tok::Str(s), start));
                i = next;
            }
            b'`' => {
                let (s, next) = lex_quoted(input, i, b'`')?;
                out.push((Tok::QuotedIdent(s), start));
                i = next;
            }
            b'%' => {
                i += 1;
                match bytes.get(i) {
                    Some(b'\'') => {
                        let (s, next) = lex_quoted(input, i, b'\'')?;
                        out.push((Tok::Env(s), start));
                        i = next;
                    }
                    Some(b'`') => {
                        let (s, next) = lex_quoted(input, i, b'`')?;
                        out.push((Tok::Env(s), start));
                        i = next;
                    }
                    _ => {
                        let end = ident_end(bytes, i);
                        if end == i {
                            return Err(syntax(start, "expected a name after `%`"));
                        }
                        out.push((Tok::Env(input[i..end].to_string()), start));
                        i = end;
                    }
                }
            }
            b'$' => {
                let end = ident_end(bytes, i + 1);
                if end == i + 1 {
                    return Err(syntax(start, "expected a name after `$`"));
                }
                out.push((Tok::Special(input[i + 1..end].to_string()), start));
                i = end;
            }
            b'0'..=b'9' => {
                let mut end = i;
                while end < bytes.len() && bytes[end].is_ascii_digit() {
                    end += 1;
                }
                if bytes.get(end) == Some(&b'.')
                    && bytes.get(end + 1).is_some_and(|c| c.is_ascii_digit())
                {
                    end += 1;
                    while end < bytes.len() && bytes[end].is_ascii_digit() {
                        end += 1;
                    }
                }
                out.push((Tok::Number(input[i..end].to_string()), start));
                i = end;
            }
            b'A'..=b'Z' | b'a'..=b'z' | b'_' => {
                let end = ident_end(bytes, i);
                out.push((Tok::Ident(input[i..end].to_string()), start));
                i = end;
            }
            b'@' => return Err(unsupported(start, "date/time literals")),
            b'+' | b'-' | b'*' | b'&' => return Err(unsupported(start, "arithmetic operators")),
            _ => {
                let ch = input[i..].chars().next().unwrap_or('?');
                return Err(syntax(start, format!("unexpected character `{ch}`")));
            }
        }
    }
    Ok(out)
}

fn ident_end(bytes: &[u8], mut i: usize) -> usize {
    while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
        i += 1;
    }
    i
}

/// Reads a `'…'` or `` `…` `` token starting at `start` (the opening quote); returns the unescaped
/// text and the offset after the closing quote.
fn lex_quoted(input: &str, start: usize, quote: u8) -> Result<(String, usize), FhirPathError> {
    let mut out = String::new();
    let mut chars = input[start + 1..].char_indices();
    while let Some((off, c)) = chars.next() {
        let here = start + 1 + off;
        if c == char::from(quote) {
            return Ok((out, here + 1));
        }
        if c != '\\' {
            out.push(c);
            continue;
        }
        let Some((_, esc)) = chars.next() else {
            break;
        };
        match esc {
            '\'' | '"' | '`' | '\\' | '/' => out.push(esc),
            'f' => out.push('\u{c}'),
            'n' => out.push('\n'),
            'r' => out.push('\r'),
            't' => out.push('\t'),
            'u' => {
                let mut code = 0u32;
                for _ in 0..4 {
                    let digit = chars
                        .next()
                        .and_then(|(_, h)| h.to_digit(16))
                        .ok_or_else(|| syntax(here, "invalid \\u escape"))?;
                    code = code * 16 + digit;
                }
                let ch = char::from_u32(code).ok_or_else(|| syntax(here, "invalid \\u escape"))?;
                out.push(ch);
            }
            other => return Err(syntax(here, format!("invalid escape `\\{other}`"))),
        }
    }
    Err(syntax(start, "unterminated quoted text"))
}

// ---------------------------------------------------------------------------------------------
// Parser

/// Nesting limit, so that hostile input cannot overflow the stack.
const MAX_DEPTH: usize = 64;

/// Length limit in tokens. Left-nested chains (`a | b | c …`, `a.b.c…`) are evaluated and dropped
/// recursively, so their length is bounded too. The longest official expression has far fewer.
const MAX_TOKENS: usize = 1024;

/// Parses a FHIRPath expression.
pub fn parse(expr: &str) -> Result<Expr, FhirPathError> {
    let tokens = lex(expr)?;
    if tokens.len() > MAX_TOKENS {
        return Err(unsupported(
            0,
            format!("expressions longer than {MAX_TOKENS} tokens"),
        ));
    }
    let mut p = Parser {
        tokens,
        pos: 0,
        depth: 0,
        end: expr.len(),
    };
    let e = p.expression()?;
    if let Some((_, pos)) = p.tokens.get(p.pos) {
        return Err(syntax(*pos, "unexpected text after the expression"));
    }
    Ok(e)
}

struct Parser {
    tokens: Vec<(Tok, usize)>,
    pos: usize,
    depth: usize,
    end: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.tokens.get(self.pos).map(|(t, _)| t)
    }

    fn offset(&self) -> usize {
        self.tokens.get(self.pos).map_or(self.end, |(_, p)| *p)
    }

    fn next(&mut self) -> Option<(Tok, usize)> {
        let t = self.tokens.get(self.pos).cloned();
        if t.is_some() {
            self.pos += 1;
        }
        t
    }

    fn eat(&mut self, tok: &Tok) -> bool {
        if self.peek() == Some(tok) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, tok: &Tok, what: &str) -> Result<(), FhirPathError> {
        if self.eat(tok) {
            Ok(())
        } else {
            Err(syntax(self.offset(), format!("expected {what}")))
        }
    }

    /// Consumes the keyword `kw` (an unquoted identifier) if it is next.
    fn eat_keyword(&mut self, kw: &str) -> bool {
        if matches!(self.peek(), Some(Tok::Ident(s)) if s == kw) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn identifier(&mut self) -> Result<String, FhirPathError> {
        match self.next() {
            Some((Tok::Ident(s) | Tok::QuotedIdent(s), _)) => Ok(s),
            Some((_, pos)) => Err(syntax(pos, "expected an identifier")),
            None => Err(syntax(self.end, "expected an identifier")),
        }
    }

    fn expression(&mut self) -> Result<Expr, FhirPathError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(syntax(self.offset(), "expression nested too deeply"));
        }
        let e = self.implies();
        self.depth -= 1;
        e
    }

    fn implies(&mut self) -> Result<Expr, FhirPathError> {
        let mut left = self.or()?;
        while self.eat_keyword("implies") {
            let right = self.or()?;
            left = binary(BinOp::Implies, left, right);
        }
        Ok(left)
    }

    fn or(&mut self) -> Result<Expr, FhirPathError> {
        let mut left = self.and()?;
        loop {
            let op = if self.eat_keyword("or") {
                BinOp::Or
            } else if self.eat_keyword("xor") {
                BinOp::Xor
            } else {
                return Ok(left);
            };
            let right = self.and()?;
            left = binary(op, left, right);
        }
    }

    fn and(&mut self) -> Result<Expr, FhirPathError> {
        let mut left = self.membership()?;
        while self.eat_keyword("and") {
            let right = self.membership()?;
            left = binary(BinOp::And, left, right);
        }
        Ok(left)
    }

    fn membership(&mut self) -> Result<Expr, FhirPathError> {
        let mut left = self.equality()?;
        loop {
            let op = if self.eat_keyword("in") {
                BinOp::In
            } else if self.eat_keyword("contains") {
                BinOp::Contains
            } else {
                return Ok(left);
            };
            let right = self.equality()?;
            left = binary(op, left, right);
        }
    }

    fn equality(&mut self) -> Result<Expr, FhirPathError> {
        let mut left = self.inequality()?;
        loop {
            let op = match self.peek() {
                Some(Tok::Eq) => BinOp::Equal,
                Some(Tok::Ne) => BinOp::NotEqual,
                Some(Tok::Tilde) => BinOp::Equivalent,
                Some(Tok::NotTilde) => BinOp::NotEquivalent,
                _ => return Ok(left),
            };
            self.pos += 1;
            let right = self.inequality()?;
            left = binary(op, left, right);
        }
    }

    fn inequality(&mut self) -> Result<Expr, FhirPathError> {
        let mut left = self.union()?;
        loop {
            let op = match self.peek() {
                Some(Tok::Lt) => BinOp::Less,
                Some(Tok::Le) => BinOp::LessOrEqual,
                Some(Tok::Gt) => BinOp::Greater,
                Some(Tok::Ge) => BinOp::GreaterOrEqual,
                _ => return Ok(left),
            };
            self.pos += 1;
            let right = self.union()?;
            left = binary(op, left, right);
        }
    }

    fn union(&mut self) -> Result<Expr, FhirPathError> {
        let mut left = self.type_expression()?;
        while self.eat(&Tok::Pipe) {
            let right = self.type_expression()?;
            left = binary(BinOp::Union, left, right);
        }
        Ok(left)
    }

    fn type_expression(&mut self) -> Result<Expr, FhirPathError> {
        let mut base = self.postfix()?;
        loop {
            let op = if self.eat_keyword("is") {
                TypeOp::Is
            } else if self.eat_keyword("as") {
                TypeOp::As
            } else {
                return Ok(base);
            };
            let ty = self.type_spec()?;
            base = Expr::Type {
                op,
                base: Box::new(base),
                ty,
            };
        }
    }

    fn type_spec(&mut self) -> Result<TypeSpec, FhirPathError> {
        let first = self.identifier()?;
        if (first == "FHIR" || first == "System") && self.peek() == Some(&Tok::Dot) {
            self.pos += 1;
            let name = self.identifier()?;
            return Ok(TypeSpec {
                namespace: Some(first),
                name,
            });
        }
        Ok(TypeSpec {
            namespace: None,
            name: first,
        })
    }

    fn postfix(&mut self) -> Result<Expr, FhirPathError> {
        let mut e = self.term()?;
        loop {
            if self.eat(&Tok::Dot) {
                let pos = self.offset();
                let name = self.identifier()?;
                e = if self.peek() == Some(&Tok::LParen) {
                    let func = self.function(&name, pos)?;
                    Expr::Call {
                        base: Some(Box::new(e)),
                        func,
                    }
                } else {
                    Expr::Child {
                        base: Some(Box::new(e)),
                        name,
                    }
                };
            } else if self.eat(&Tok::LBracket) {
                let index = self.expression()?;
                self.expect(&Tok::RBracket, "`]`")?;
                e = Expr::Index {
                    base: Box::new(e),
                    index: Box::new(index),
                };
            } else {
                return Ok(e);
            }
        }
    }

    fn term(&mut self) -> Result<Expr, FhirPathError> {
        let Some((tok, pos)) = self.next() else {
            return Err(syntax(self.end, "unexpected end of expression"));
        };
        match tok {
            Tok::Str(s) => Ok(Expr::Literal(Value::String(s))),
            Tok::Number(n) => n
                .parse::<serde_json::Number>()
                .map(|n| Expr::Literal(Value::Number(n)))
                .map_err(|_| syntax(pos, "invalid number")),
            Tok::LParen => {
                let e = self.expression()?;
                self.expect(&Tok::RParen, "`)`")?;
                Ok(e)
            }
            Tok::LBrace => {
                self.expect(&Tok::RBrace, "`}`")?;
                Ok(Expr::EmptySet)
            }
            Tok::Env(name) => match name.as_str() {
                "resource" => Ok(Expr::Var(Var::Resource)),
                "rootResource" => Ok(Expr::Var(Var::RootResource)),
                "context" => Ok(Expr::Var(Var::Context)),
                other => Err(unsupported(pos, format!("variable %{other}"))),
            },
            Tok::Special(name) => match name.as_str() {
                "this" => Ok(Expr::This),
                other => Err(unsupported(pos, format!("${other}"))),
            },
            Tok::Ident(name) | Tok::QuotedIdent(name) => {
                if self.peek() == Some(&Tok::LParen) {
                    let func = self.function(&name, pos)?;
                    return Ok(Expr::Call { base: None, func });
                }
                match name.as_str() {
                    "true" => Ok(Expr::Literal(Value::Bool(true))),
                    "false" => Ok(Expr::Literal(Value::Bool(false))),
                    _ => Ok(Expr::Child { base: None, name }),
                }
            }
            _ => Err(syntax(pos, "expected an expression")),
        }
    }

    /// Parses the argument list of function `name` (the `(` is next).
    fn function(&mut self, name: &str, pos: usize) -> Result<Func, FhirPathError> {
        self.expect(&Tok::LParen, "`(`")?;
        let func = match name {
            "ofType" | "as" | "is" => {
                let ty = self.type_spec()?;
                match name {
                    "ofType" => Func::OfType(ty),
                    "as" => Func::As(ty),
                    _ => Func::Is(ty),
                }
            }
            "extension" => match self.next() {
                Some((Tok::Str(url), _)) => Func::Extension(url),
                _ => return Err(syntax(pos, "extension() takes a url string literal")),
            },
            "where" | "select" | "all" => {
                let arg = Box::new(self.expression()?);
                match name {
                    "where" => Func::Where(arg),
                    "select" => Func::Select(arg),
                    _ => Func::All(arg),
                }
            }
            "exists" => {
                if self.peek() == Some(&Tok::RParen) {
                    Func::Exists(None)
                } else {
                    Func::Exists(Some(Box::new(self.expression()?)))
                }
            }
            "empty" => Func::Empty,
            "not" => Func::Not,
            "first" => Func::First,
            "last" => Func::Last,
            "tail" => Func::Tail,
            "count" => Func::Count,
            "resolve" => Func::Resolve,
            "hasValue" => Func::HasValue,
            other => return Err(unsupported(pos, format!("function {other}()"))),
        };
        self.expect(&Tok::RParen, &format!("`)` closing {name}("))?;
        Ok(func)
    }
}

fn binary(op: BinOp, left: Expr, right: Expr) -> Expr {
    Expr::Binary {
        op,
        left: Box::new(left),
        right: Box::new(right),
    }
}

// ---------------------------------------------------------------------------------------------
// Types

/// FHIR primitive types, and the suffix they take in a choice element name (`valueDateTime`).
const PRIMITIVE_TYPES: &[(&str, &str)] = &[
    ("Base64Binary", "base64Binary"),
    ("Boolean", "boolean"),
    ("Canonical", "canonical"),
    ("Code", "code"),
    ("Date", "date"),
    ("DateTime", "dateTime"),
    ("Decimal", "decimal"),
    ("Id", "id"),
    ("Instant", "instant"),
    ("Integer", "integer"),
    ("Markdown", "markdown"),
    ("Oid", "oid"),
    ("PositiveInt", "positiveInt"),
    ("String", "string"),
    ("Time", "time"),
    ("UnsignedInt", "unsignedInt"),
    ("Uri", "uri"),
    ("Url", "url"),
    ("Uuid", "uuid"),
];

/// FHIR complex data types that can appear as the type of a choice element.
const COMPLEX_TYPES: &[&str] = &[
    "Address",
    "Age",
    "Annotation",
    "Attachment",
    "CodeableConcept",
    "Coding",
    "ContactDetail",
    "ContactPoint",
    "Contributor",
    "Count",
    "DataRequirement",
    "Distance",
    "Dosage",
    "Duration",
    "Expression",
    "HumanName",
    "Identifier",
    "Meta",
    "Money",
    "ParameterDefinition",
    "Period",
    "Quantity",
    "Range",
    "Ratio",
    "Reference",
    "RelatedArtifact",
    "SampledData",
    "Signature",
    "Timing",
    "TriggerDefinition",
    "UsageContext",
];

/// The FHIR type named by the suffix of a choice element (`Quantity` → `Quantity`,
/// `DateTime` → `dateTime`).
fn choice_suffix_type(suffix: &str) -> Option<&'static str> {
    if let Some(t) = COMPLEX_TYPES.iter().find(|t| **t == suffix) {
        return Some(t);
    }
    PRIMITIVE_TYPES
        .iter()
        .find(|(s, _)| *s == suffix)
        .map(|(_, t)| *t)
}

/// The type a FHIR type is derived from, for `is`/`ofType` matching.
fn base_type(t: &str) -> Option<&'static str> {
    match t {
        "code" | "id" | "markdown" => Some("string"),
        "url" | "canonical" | "oid" | "uuid" => Some("uri"),
        "positiveInt" | "unsignedInt" => Some("integer"),
        "Age" | "Count" | "Distance" | "Duration" | "MoneyQuantity" | "SimpleQuantity" => {
            Some("Quantity")
        }
        "Bundle" | "Binary" | "Parameters" | "DomainResource" => Some("Resource"),
        _ if crate::is_resource_type(t) => Some("DomainResource"),
        _ => None,
    }
}

/// The FHIR name of a System (FHIRPath) type.
fn system_type(name: &str) -> &str {
    match name {
        "Boolean" => "boolean",
        "String" => "string",
        "Integer" => "integer",
        "Decimal" => "decimal",
        "Date" => "date",
        "DateTime" => "dateTime",
        "Time" => "time",
        other => other,
    }
}

/// Whether a value of FHIR type `actual` is of type `spec` (itself or a specialization).
fn type_matches(actual: &str, spec: &TypeSpec) -> bool {
    let wanted = if spec.namespace.as_deref() == Some("System") {
        system_type(&spec.name)
    } else {
        spec.name.as_str()
    };
    let mut t = actual;
    // The derivation chains are at most four steps long.
    for _ in 0..8 {
        if t == wanted {
            return true;
        }
        match base_type(t) {
            Some(b) => t = b,
            None => return false,
        }
    }
    false
}

// ---------------------------------------------------------------------------------------------
// Evaluation

/// One item of a FHIRPath result: a JSON value (usually borrowed from the resource) and its FHIR
/// type when the navigation determined it.
#[derive(Debug, Clone, PartialEq)]
pub struct Node<'a> {
    pub value: Cow<'a, Value>,
    /// The FHIR type when known from the navigation: the type of a choice element
    /// (`valueQuantity` → `Quantity`, `valueDateTime` → `dateTime`), a resolved reference's
    /// resource type, `boolean`/`integer` for computed values. `None` for ordinary elements, whose
    /// type follows from their definition (or their JSON shape).
    pub type_name: Option<&'static str>,
}

impl<'a> Node<'a> {
    fn borrowed(value: &'a Value, type_name: Option<&'static str>) -> Self {
        Node {
            value: Cow::Borrowed(value),
            type_name,
        }
    }

    fn boolean(b: bool) -> Self {
        Node {
            value: Cow::Owned(Value::Bool(b)),
            type_name: Some("boolean"),
        }
    }

    fn into_owned<'b>(self) -> Node<'b> {
        Node {
            value: Cow::Owned(self.value.into_owned()),
            type_name: self.type_name,
        }
    }

    /// The JSON value.
    pub fn json(&self) -> &Value {
        &self.value
    }

    /// The FHIR type: the known type, else a resource's `resourceType`, else the type a JSON
    /// primitive implies (`boolean`, `integer`, `decimal`, `string`). `None` for a complex element
    /// of unknown type.
    pub fn fhir_type(&self) -> Option<&str> {
        if let Some(t) = self.type_name {
            return Some(t);
        }
        match self.json() {
            Value::Object(map) => map.get("resourceType").and_then(Value::as_str),
            Value::Bool(_) => Some("boolean"),
            Value::String(_) => Some("string"),
            Value::Number(n) => {
                let text = n.to_string();
                if text.contains(['.', 'e', 'E']) {
                    Some("decimal")
                } else {
                    Some("integer")
                }
            }
            _ => None,
        }
    }
}

/// Evaluates `expr` with `resource` as the context (and `%resource`).
pub fn evaluate<'a>(expr: &Expr, resource: &'a Value) -> Vec<Node<'a>> {
    let eval = Evaluator { root: resource };
    let focus = [Node::borrowed(resource, None)];
    eval.eval(expr, &focus)
}

struct Evaluator<'a> {
    root: &'a Value,
}

impl<'a> Evaluator<'a> {
    fn eval(&self, expr: &Expr, focus: &[Node<'a>]) -> Vec<Node<'a>> {
        match expr {
            Expr::Literal(v) => vec![Node {
                value: Cow::Owned(v.clone()),
                type_name: None,
            }],
            Expr::EmptySet => Vec::new(),
            Expr::This => focus.to_vec(),
            Expr::Var(_) => vec![Node::borrowed(self.root, None)],
            Expr::Child { base, name } => {
                let mut out = Vec::new();
                match base {
                    None => {
                        for node in focus {
                            if is_type_name_of(node, name) {
                                out.push(node.clone());
                            } else {
                                children(node, name, &mut out);
                            }
                        }
                    }
                    Some(base) => {
                        for node in &self.eval(base, focus) {
                            children(node, name, &mut out);
                        }
                    }
                }
                out
            }
            Expr::Index { base, index } => {
                let items = self.eval(base, focus);
                let idx = self.eval(index, focus);
                match idx.as_slice() {
                    [n] => match n.json().as_u64().and_then(|i| usize::try_from(i).ok()) {
                        Some(i) => items.into_iter().nth(i).into_iter().collect(),
                        None => Vec::new(),
                    },
                    _ => Vec::new(),
                }
            }
            Expr::Call { base, func } => {
                let input;
                let input: &[Node<'a>] = match base {
                    Some(b) => {
                        input = self.eval(b, focus);
                        &input
                    }
                    None => focus,
                };
                self.call(func, input)
            }
            Expr::Binary { op, left, right } => {
                let l = self.eval(left, focus);
                let r = self.eval(right, focus);
                binary_op(*op, l, r)
            }
            Expr::Type { op, base, ty } => {
                let items = self.eval(base, focus);
                match op {
                    TypeOp::Is => match items.as_slice() {
                        [n] => vec![Node::boolean(node_is(n, ty))],
                        _ => Vec::new(),
                    },
                    TypeOp::As => items.into_iter().filter(|n| node_is(n, ty)).collect(),
                }
            }
        }
    }

    fn call(&self, func: &Func, input: &[Node<'a>]) -> Vec<Node<'a>> {
        match func {
            Func::Where(criteria) => input
                .iter()
                .filter(|n| self.test(criteria, n) == Some(true))
                .cloned()
                .collect(),
            Func::Select(projection) => input
                .iter()
                .flat_map(|n| self.eval(projection, std::slice::from_ref(n)))
                .collect(),
            Func::Exists(None) => vec![Node::boolean(!input.is_empty())],
            Func::Exists(Some(criteria)) => vec![Node::boolean(
                input.iter().any(|n| self.test(criteria, n) == Some(true)),
            )],
            Func::All(criteria) => vec![Node::boolean(
                input.iter().all(|n| self.test(criteria, n) == Some(true)),
            )],
            Func::Empty => vec![Node::boolean(input.is_empty())],
            Func::Not => match to_bool(input) {
                Some(b) => vec![Node::boolean(!b)],
                None => Vec::new(),
            },
            Func::First => input.first().cloned().into_iter().collect(),
            Func::Last => input.last().cloned().into_iter().collect(),
            Func::Tail => input.iter().skip(1).cloned().collect(),
            Func::Count => vec![Node {
                value: Cow::Owned(Value::from(input.len())),
                type_name: Some("integer"),
            }],
            Func::OfType(ty) | Func::As(ty) => {
                input.iter().filter(|n| node_is(n, ty)).cloned().collect()
            }
            Func::Is(ty) => match input {
                [n] => vec![Node::boolean(node_is(n, ty))],
                _ => Vec::new(),
            },
            Func::Resolve => input.iter().filter_map(|n| self.resolve(n)).collect(),
            Func::Extension(url) => {
                let mut exts = Vec::new();
                for n in input {
                    children(n, "extension", &mut exts);
                }
                exts.retain(|e| e.json().get("url").and_then(Value::as_str) == Some(url));
                exts
            }
            Func::HasValue => vec![Node::boolean(matches!(
                input,
                [n] if matches!(n.json(), Value::String(_) | Value::Number(_) | Value::Bool(_))
            ))],
        }
    }

    /// Evaluates `criteria` with `node` as `$this`, as a boolean.
    fn test(&self, criteria: &Expr, node: &Node<'a>) -> Option<bool> {
        to_bool(&self.eval(criteria, std::slice::from_ref(node)))
    }

    fn resolve(&self, node: &Node<'a>) -> Option<Node<'a>> {
        let (reference, declared_type) = match node.json() {
            Value::String(s) => (Some(s.as_str()), None),
            Value::Object(map) => (
                map.get("reference").and_then(Value::as_str),
                map.get("type").and_then(Value::as_str),
            ),
            _ => return None,
        };
        if let Some(local) = reference.and_then(|r| r.strip_prefix('#')) {
            if local.is_empty() {
                return Some(Node::borrowed(self.root, None));
            }
            let contained = self.root.get("contained")?.as_array()?;
            let found = contained
                .iter()
                .find(|c| c.get("id").and_then(Value::as_str) == Some(local))?;
            return Some(Node::borrowed(found, None));
        }
        if let Some(parsed) = reference.and_then(crate::reference::parse_reference) {
            return Some(stub_resource(parsed.resource_type, Some(parsed.id)));
        }
        let declared = crate::reference::reference_type_name(declared_type?)?;
        Some(stub_resource(declared, None))
    }
}

/// A stand-in for a resource that a reference points to: only its type (and id) are known.
fn stub_resource(resource_type: &'static str, id: Option<&str>) -> Node<'static> {
    let mut map = Map::new();
    map.insert(
        "resourceType".to_string(),
        Value::String(resource_type.to_string()),
    );
    if let Some(id) = id {
        map.insert("id".to_string(), Value::String(id.to_string()));
    }
    Node {
        value: Cow::Owned(Value::Object(map)),
        type_name: Some(resource_type),
    }
}

/// Whether a leading identifier `name` names the type of the focus (`Patient.name` evaluated on a
/// Patient, `Resource.id` on any resource).
fn is_type_name_of(node: &Node<'_>, name: &str) -> bool {
    if !name.starts_with(|c: char| c.is_ascii_uppercase()) {
        return false;
    }
    let Some(rt) = node.json().get("resourceType").and_then(Value::as_str) else {
        return false;
    };
    name == rt
        || name == "Resource"
        || (name == "DomainResource" && !matches!(rt, "Bundle" | "Binary" | "Parameters"))
}

fn node_is(node: &Node<'_>, ty: &TypeSpec) -> bool {
    node.fhir_type().is_some_and(|t| type_matches(t, ty))
}

/// Appends the children called `name` of `node` (arrays flattened, nulls skipped). When there is
/// no such element, looks for a choice element `name[x]` (`valueQuantity`) and records its type.
fn children<'a>(node: &Node<'a>, name: &str, out: &mut Vec<Node<'a>>) {
    match &node.value {
        Cow::Borrowed(v) => children_of(v, name, out),
        Cow::Owned(v) => {
            let mut tmp = Vec::new();
            children_of(v, name, &mut tmp);
            out.extend(tmp.into_iter().map(Node::into_owned));
        }
    }
}

fn children_of<'a>(value: &'a Value, name: &str, out: &mut Vec<Node<'a>>) {
    let Value::Object(map) = value else {
        return;
    };
    if let Some(v) = map.get(name) {
        push_flat(v, None, out);
        return;
    }
    for (key, v) in map {
        let Some(suffix) = key.strip_prefix(name) else {
            continue;
        };
        if !suffix.starts_with(|c: char| c.is_ascii_uppercase()) {
            continue;
        }
        if let Some(t) = choice_suffix_type(suffix) {
            push_flat(v, Some(t), out);
        }
    }
}

fn push_flat<'a>(v: &'a Value, type_name: Option<&'static str>, out: &mut Vec<Node<'a>>) {
    match v {
        Value::Null => {}
        Value::Array(items) => out.extend(
            items
                .iter()
                .filter(|i| !i.is_null())
                .map(|i| Node::borrowed(i, type_name)),
        ),
        _ => out.push(Node::borrowed(v, type_name)),
    }
}

/// The singleton evaluation of a collection as a boolean: empty → `None`, one boolean → its
/// value, one other item → `true`, more than one → `None` (an error in FHIRPath).
fn to_bool(items: &[Node<'_>]) -> Option<bool> {
    match items {
        [n] => Some(n.json().as_bool().unwrap_or(true)),
        _ => None,
    }
}

fn bool_result(b: Option<bool>) -> Vec<Node<'static>> {
    b.map(Node::boolean).into_iter().collect()
}

fn binary_op<'a>(op: BinOp, l: Vec<Node<'a>>, r: Vec<Node<'a>>) -> Vec<Node<'a>> {
    match op {
        BinOp::Union => union(l, r),
        BinOp::Equal => bool_result(collections_equal(&l, &r, values_equal)),
        BinOp::NotEqual => bool_result(collections_equal(&l, &r, values_equal).map(|b| !b)),
        BinOp::Equivalent => bool_result(Some(
            collections_equal(&l, &r, values_equivalent).unwrap_or(l.is_empty() && r.is_empty()),
        )),
        BinOp::NotEquivalent => bool_result(Some(
            !collections_equal(&l, &r, values_equivalent).unwrap_or(l.is_empty() && r.is_empty()),
        )),
        BinOp::Less | BinOp::LessOrEqual | BinOp::Greater | BinOp::GreaterOrEqual => {
            let ord = match (l.as_slice(), r.as_slice()) {
                ([a], [b]) => compare(a.json(), b.json()),
                _ => None,
            };
            bool_result(ord.map(|o| match op {
                BinOp::Less => o.is_lt(),
                BinOp::LessOrEqual => o.is_le(),
                BinOp::Greater => o.is_gt(),
                _ => o.is_ge(),
            }))
        }
        BinOp::In => match l.as_slice() {
            [a] => bool_result(Some(r.iter().any(|b| values_equal(a.json(), b.json())))),
            _ => Vec::new(),
        },
        BinOp::Contains => match r.as_slice() {
            [b] => bool_result(Some(l.iter().any(|a| values_equal(a.json(), b.json())))),
            _ => Vec::new(),
        },
        BinOp::And => bool_result(match (to_bool(&l), to_bool(&r)) {
            (Some(false), _) | (_, Some(false)) => Some(false),
            (Some(true), Some(true)) => Some(true),
            _ => None,
        }),
        BinOp::Or => bool_result(match (to_bool(&l), to_bool(&r)) {
            (Some(true), _) | (_, Some(true)) => Some(true),
            (Some(false), Some(false)) => Some(false),
            _ => None,
        }),
        BinOp::Xor => bool_result(match (to_bool(&l), to_bool(&r)) {
            (Some(a), Some(b)) => Some(a != b),
            _ => None,
        }),
        BinOp::Implies => bool_result(match (to_bool(&l), to_bool(&r)) {
            (Some(false), _) | (_, Some(true)) => Some(true),
            (Some(true), other) => other,
            _ => None,
        }),
    }
}

/// `l | r`: both collections, without duplicates. Elements of the resource are duplicates when
/// they are the same element; computed values when they are equal.
fn union<'a>(mut l: Vec<Node<'a>>, r: Vec<Node<'a>>) -> Vec<Node<'a>> {
    if l.is_empty() {
        return r;
    }
    let mut seen: HashSet<*const Value> = l
        .iter()
        .filter_map(|n| match &n.value {
            Cow::Borrowed(v) => Some(*v as *const Value),
            Cow::Owned(_) => None,
        })
        .collect();
    for n in r {
        let duplicate = match &n.value {
            Cow::Borrowed(v) => !seen.insert(*v as *const Value),
            Cow::Owned(v) => l
                .iter()
                .any(|m| matches!(&m.value, Cow::Owned(w) if values_equal(v, w))),
        };
        if !duplicate {
            l.push(n);
        }
    }
    l
}

fn collections_equal(
    l: &[Node<'_>],
    r: &[Node<'_>],
    eq: fn(&Value, &Value) -> bool,
) -> Option<bool> {
    if l.is_empty() || r.is_empty() {
        return None;
    }
    if l.len() != r.len() {
        return Some(false);
    }
    Some(l.iter().zip(r).all(|(a, b)| eq(a.json(), b.json())))
}

fn values_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) => x == y,
            _ => x.to_string() == y.to_string(),
        },
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| values_equal(v, w)))
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(v, w)| values_equal(v, w))
        }
        _ => a == b,
    }
}

fn values_equivalent(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::String(x), Value::String(y)) => {
            let norm = |s: &str| {
                s.split_whitespace()
                    .map(str::to_lowercase)
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            norm(x) == norm(y)
        }
        _ => values_equal(a, b),
    }
}

fn compare(a: &Value, b: &Value) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64()?.partial_cmp(&y.as_f64()?),
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Static typing

/// A place in the element tables: a type, and within it the path of an inline (backbone) element,
/// or `""` for the type itself. Primitive types have no table and so no children.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Place {
    type_name: &'static str,
    path: &'static str,
}

/// The FHIR types the items of `expr` can have when evaluated on a resource of `resource_type`,
/// from the element definitions (`Patient.telecom` → `ContactPoint`, `Patient.gender` → `code`,
/// `Observation.value` → every allowed `value[x]` type). `None` when the expression leaves what
/// the tables can follow (`resolve()`, `select(…)`, an unknown element). Inline elements are
/// reported as `BackboneElement`/`Element`.
pub fn static_types(expr: &Expr, resource_type: &str) -> Option<Vec<&'static str>> {
    let root = crate::generated::elements::type_def(resource_type)?;
    let context = [Place {
        type_name: root.name,
        path: "",
    }];
    let places = static_places(expr, &context)?;
    let mut types: Vec<&'static str> = Vec::new();
    for place in places {
        let name = if place.path.is_empty() {
            place.type_name
        } else {
            inline_type_name(place)
        };
        if !types.contains(&name) {
            types.push(name);
        }
    }
    Some(types)
}

fn inline_type_name(place: Place) -> &'static str {
    match crate::generated::elements::type_def(place.type_name) {
        Some(td) if td.kind == crate::generated::elements::TypeKind::Complex => "Element",
        _ => "BackboneElement",
    }
}

fn primitive_place(type_name: &'static str) -> Vec<Place> {
    vec![Place {
        type_name,
        path: "",
    }]
}

fn static_places(expr: &Expr, context: &[Place]) -> Option<Vec<Place>> {
    match expr {
        Expr::Literal(Value::Bool(_)) => Some(primitive_place("boolean")),
        Expr::Literal(Value::String(_)) => Some(primitive_place("string")),
        Expr::Literal(_) => Some(primitive_place("decimal")),
        Expr::EmptySet => Some(Vec::new()),
        Expr::This => Some(context.to_vec()),
        Expr::Var(_) => None,
        Expr::Child { base, name } => {
            let bases = match base {
                None => {
                    let names_context = matches!(
                        context,
                        [only] if only.path.is_empty()
                            && (name == only.type_name
                                || ((name == "Resource" || name == "DomainResource")
                                    && crate::is_resource_type(only.type_name)))
                    );
                    if names_context {
                        return Some(context.to_vec());
                    }
                    context.to_vec()
                }
                Some(b) => static_places(b, context)?,
            };
            let mut out = Vec::new();
            for place in bases {
                out.extend(static_child(place, name)?);
            }
            Some(out)
        }
        Expr::Index { base, .. } => static_places(base, context),
        Expr::Call { base, func } => {
            let input = match base {
                None => context.to_vec(),
                Some(b) => static_places(b, context)?,
            };
            match func {
                Func::Where(_) | Func::First | Func::Last | Func::Tail => Some(input),
                Func::OfType(ty) | Func::As(ty) => Some(filter_places(input, ty)),
                Func::Extension(_) => Some(primitive_place("Extension")),
                Func::Exists(_)
                | Func::All(_)
                | Func::Empty
                | Func::Not
                | Func::Is(_)
                | Func::HasValue => Some(primitive_place("boolean")),
                Func::Count => Some(primitive_place("integer")),
                Func::Select(_) | Func::Resolve => None,
            }
        }
        Expr::Binary { op, left, right } => match op {
            BinOp::Union => {
                let mut l = static_places(left, context)?;
                for p in static_places(right, context)? {
                    if !l.contains(&p) {
                        l.push(p);
                    }
                }
                Some(l)
            }
            _ => Some(primitive_place("boolean")),
        },
        Expr::Type { op, base, ty } => match op {
            TypeOp::Is => Some(primitive_place("boolean")),
            TypeOp::As => Some(filter_places(static_places(base, context)?, ty)),
        },
    }
}

fn filter_places(places: Vec<Place>, ty: &TypeSpec) -> Vec<Place> {
    places
        .into_iter()
        .filter(|p| p.path.is_empty() && type_matches(p.type_name, ty))
        .collect()
}

/// The places the child `name` of `place` can be (several for a choice element).
fn static_child(place: Place, name: &str) -> Option<Vec<Place>> {
    let td = crate::generated::elements::type_def(place.type_name)?;
    let find = |suffix: &str| {
        td.elements
            .binary_search_by(|e| {
                let path = e.path.as_bytes();
                let wanted = [
                    place.path,
                    if place.path.is_empty() { "" } else { "." },
                    name,
                    suffix,
                ];
                cmp_concat(path, &wanted)
            })
            .ok()
            .and_then(|i| td.elements.get(i))
    };
    let (element, choice) = match find("") {
        Some(e) => (e, false),
        None => (find("[x]")?, true),
    };
    if !element.content_ref.is_empty() {
        return Some(vec![Place {
            type_name: td.name,
            path: element.content_ref,
        }]);
    }
    Some(
        element
            .types
            .iter()
            .map(|t| match *t {
                "BackboneElement" | "Element" if !choice => Place {
                    type_name: td.name,
                    path: element.path,
                },
                _ => Place {
                    type_name: t,
                    path: "",
                },
            })
            .collect(),
    )
}

/// Compares `a` with the concatenation of `parts`, without building it.
fn cmp_concat(a: &[u8], parts: &[&str]) -> std::cmp::Ordering {
    let mut rest = a;
    for part in parts {
        let p = part.as_bytes();
        let n = p.len().min(rest.len());
        match rest[..n].cmp(&p[..n]) {
            std::cmp::Ordering::Equal => {}
            other => return other,
        }
        if rest.len() < p.len() {
            return std::cmp::Ordering::Less;
        }
        rest = &rest[n..];
    }
    if rest.is_empty() {
        std::cmp::Ordering::Equal
    } else {
        std::cmp::Ordering::Greater
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn eval_json(expr: &str, resource: &Value) -> Vec<Value> {
        let parsed = match parse(expr) {
            Ok(e) => e,
            Err(e) => panic!("{expr}: {e}"),
        };
        evaluate(&parsed, resource)
            .into_iter()
            .map(|n| n.value.into_owned())
            .collect()
    }

    fn types(expr: &str, resource: &Value) -> Vec<Option<&'static str>> {
        let parsed = parse(expr).unwrap_or_else(|e| panic!("{expr}: {e}"));
        evaluate(&parsed, resource)
            .into_iter()
            .map(|n| n.type_name)
            .collect()
    }

    fn patient() -> Value {
        json!({
            "resourceType": "Patient",
            "id": "p1",
            "extension": [
                {"url": "http://example.org/race", "valueCoding": {"code": "2106-3"}},
                {"url": "http://example.org/birthPlace", "valueAddress": {"city": "Springfield"}}
            ],
            "name": [
                {"use": "official", "family": "Chalmers", "given": ["Peter", "James"]},
                {"use": "usual", "given": ["Jim"]}
            ],
            "telecom": [
                {"system": "phone", "value": "555-1234"},
                {"system": "email", "value": "jim@example.org"}
            ],
            "gender": "male",
            "birthDate": "1974-12-25",
            "_birthDate": {"extension": [{"url": "x", "valueDateTime": "1974-12-25T14:35:45-05:00"}]},
            "deceasedBoolean": false,
            "managingOrganization": {"reference": "Organization/1"},
            "generalPractitioner": [
                {"reference": "http://example.org/fhir/Practitioner/pr1/_history/2"},
                {"reference": "#c1"},
                {"identifier": {"value": "x"}, "type": "RelatedPerson"}
            ],
            "contained": [{"resourceType": "Practitioner", "id": "c1"}]
        })
    }

    #[test]
    fn parses_the_official_forms() {
        for expr in [
            "Patient.name.family",
            "Account.subject.where(resolve() is Patient)",
            "(Observation.value as Quantity)",
            "(Observation.value.ofType(CodeableConcept)).text",
            "Bundle.entry[0].resource",
            "Patient.deceased.exists() and Patient.deceased != false",
            "Library.relatedArtifact.where(type='composed-of').resource",
            "ValueSet.expansion.contains.code | ValueSet.compose.include.concept.code",
            "Patient.telecom.where(system='email')",
            "Task.for.where(resolve() is Patient)",
            "Observation.value.as(Quantity)",
            "Patient.extension('http://x').value.first()",
            "Patient.extension.where(url = 'http://x').value",
            "%resource.id.hasValue()",
            "Patient.name.given.is(FHIR.string) or {} implies true xor false",
            "Patient.gender in ('male' | 'female')",
            "Patient.`name`.count() >= 1 // comment",
            "Patient /* c */ .id",
            "$this.id ~ 'X' and 1.5 < 2",
        ] {
            if let Err(e) = parse(expr) {
                panic!("{expr}: {e}");
            }
        }
    }

    #[test]
    fn parse_builds_the_expected_tree() {
        let got = parse("A.b.where(c = 'x') | d is FHIR.Quantity");
        let child = |base: Option<Expr>, name: &str| Expr::Child {
            base: base.map(Box::new),
            name: name.to_string(),
        };
        let expected = binary(
            BinOp::Union,
            Expr::Call {
                base: Some(Box::new(child(Some(child(None, "A")), "b"))),
                func: Func::Where(Box::new(binary(
                    BinOp::Equal,
                    child(None, "c"),
                    Expr::Literal(json!("x")),
                ))),
            },
            Expr::Type {
                op: TypeOp::Is,
                base: Box::new(child(None, "d")),
                ty: TypeSpec {
                    namespace: Some("FHIR".to_string()),
                    name: "Quantity".to_string(),
                },
            },
        );
        assert_eq!(got, Ok(expected));
        // `and` binds tighter than `or`, `=` tighter than `and`.
        let got = parse("a or b and c = d");
        let expected = binary(
            BinOp::Or,
            child(None, "a"),
            binary(
                BinOp::And,
                child(None, "b"),
                binary(BinOp::Equal, child(None, "c"), child(None, "d")),
            ),
        );
        assert_eq!(got, Ok(expected));
        assert_eq!(
            parse(r"'it\'s \u00e9\n'"),
            Ok(Expr::Literal(json!("it's é\n")))
        );
    }

    #[test]
    fn parse_errors() {
        for (expr, unsupported_feature) in [
            ("", false),
            ("Patient.", false),
            ("Patient.name.where(", false),
            ("Patient.name)", false),
            ("'unterminated", false),
            ("Patient.name.family = ", false),
            ("a ! b", false),
            ("Patient.name[0", false),
            ("a # b", false),
            ("Patient.extension(url)", false),
            ("x.ofType()", false),
            ("Patient.name.foo()", true),
            ("Patient.birthDate > @2020", true),
            ("1 + 2", true),
            ("%ucum", true),
            ("$index", true),
        ] {
            match parse(expr) {
                Ok(e) => panic!("{expr:?} parsed as {e:?}"),
                Err(FhirPathError::Unsupported { .. }) => {
                    assert!(unsupported_feature, "{expr:?} reported as unsupported")
                }
                Err(FhirPathError::Syntax { .. }) => {
                    assert!(!unsupported_feature, "{expr:?} reported as a syntax error")
                }
            }
        }
        let deep = format!("{}a{}", "(".repeat(200), ")".repeat(200));
        assert!(parse(&deep).is_err());
        let long_union = vec!["a"; 600].join(" | ");
        assert!(parse(&long_union).is_err());
        let long_path = vec!["a"; 600].join(".");
        assert!(parse(&long_path).is_err());
        let fine = vec!["a"; 200].join(".");
        assert!(parse(&fine).is_ok());
    }

    #[test]
    fn navigation_flattens_arrays() {
        let p = patient();
        assert_eq!(
            eval_json("Patient.name.given", &p),
            vec![json!("Peter"), json!("James"), json!("Jim")]
        );
        assert_eq!(
            eval_json("Patient.name.family", &p),
            vec![json!("Chalmers")]
        );
        assert_eq!(eval_json("Resource.id", &p), vec![json!("p1")]);
        assert_eq!(eval_json("DomainResource.id", &p), vec![json!("p1")]);
        assert_eq!(eval_json("id", &p), vec![json!("p1")]);
        // Another type's path yields nothing.
        assert!(eval_json("Observation.id", &p).is_empty());
        assert!(eval_json("Patient.nothing.here", &p).is_empty());
        // The `_birthDate` companion is not the value.
        assert_eq!(
            eval_json("Patient.birthDate", &p),
            vec![json!("1974-12-25")]
        );
        assert_eq!(eval_json("Patient.name[1].given", &p), vec![json!("Jim")]);
        assert!(eval_json("Patient.name[5]", &p).is_empty());
    }

    #[test]
    fn choice_elements_carry_their_type() {
        let obs = json!({
            "resourceType": "Observation",
            "valueQuantity": {"value": 5.4, "unit": "mmol/l"},
            "effectiveDateTime": "2013-04-02T09:30:10+01:00",
            "component": [
                {"valueCodeableConcept": {"text": "x"}},
                {"valueQuantity": {"value": 1}},
                {"valueString": "s"}
            ]
        });
        assert_eq!(types("Observation.value", &obs), vec![Some("Quantity")]);
        assert_eq!(types("Observation.effective", &obs), vec![Some("dateTime")]);
        assert_eq!(
            eval_json("Observation.value.ofType(Quantity).value", &obs),
            vec![json!(5.4)]
        );
        assert!(eval_json("Observation.value.ofType(CodeableConcept)", &obs).is_empty());
        assert_eq!(
            eval_json("(Observation.value as Quantity).unit", &obs).len(),
            1
        );
        assert_eq!(eval_json("Observation.value.as(Quantity)", &obs).len(), 1);
        assert_eq!(
            eval_json("Observation.value is Quantity", &obs),
            vec![json!(true)]
        );
        assert_eq!(
            eval_json("Observation.value is Period", &obs),
            vec![json!(false)]
        );
        assert_eq!(
            types("Observation.component.value", &obs),
            vec![Some("CodeableConcept"), Some("Quantity"), Some("string")]
        );
        assert_eq!(
            eval_json(
                "(Observation.component.value.ofType(CodeableConcept)).text",
                &obs
            ),
            vec![json!("x")]
        );
        assert_eq!(
            eval_json("Observation.component.value.ofType(string)", &obs),
            vec![json!("s")]
        );
        // `System.String` names the FHIR `string` type.
        assert_eq!(
            eval_json("Observation.component.value.ofType(System.String)", &obs).len(),
            1
        );
        // A non-type suffix is not a choice element.
        let odd = json!({"resourceType": "Basic", "codeFoo": "x", "codeString": "y"});
        assert_eq!(eval_json("Basic.code", &odd), vec![json!("y")]);
        // Specializations match their base type.
        let cond = json!({"resourceType": "Condition", "onsetAge": {"value": 52}});
        assert_eq!(
            types("Condition.onset.ofType(Quantity)", &cond),
            vec![Some("Age")]
        );
        assert_eq!(
            types("Condition.onset.ofType(Age)", &cond),
            vec![Some("Age")]
        );
    }

    #[test]
    fn where_and_comparisons() {
        let p = patient();
        assert_eq!(
            eval_json("Patient.telecom.where(system='email').value", &p),
            vec![json!("jim@example.org")]
        );
        assert_eq!(
            eval_json("Patient.telecom.where(system != 'email').value", &p),
            vec![json!("555-1234")]
        );
        assert_eq!(
            eval_json("Patient.name.where(given = 'Jim').use", &p),
            vec![json!("usual")]
        );
        assert_eq!(
            eval_json("Patient.name.where(use ~ 'OFFICIAL').family", &p),
            vec![json!("Chalmers")]
        );
        assert_eq!(eval_json("Patient.gender = 'male'", &p), vec![json!(true)]);
        assert!(eval_json("Patient.nothing = 'male'", &p).is_empty());
        assert_eq!(
            eval_json("Patient.gender in ('male' | 'female')", &p),
            vec![json!(true)]
        );
        assert_eq!(eval_json("Patient.name.count() > 1", &p), vec![json!(true)]);
        assert_eq!(eval_json("2 = 2.0", &p), vec![json!(true)]);
    }

    #[test]
    fn deceased_expression() {
        let expr = "Patient.deceased.exists() and Patient.deceased != false";
        let cases = [
            (
                json!({"resourceType": "Patient", "deceasedBoolean": true}),
                true,
            ),
            (
                json!({"resourceType": "Patient", "deceasedBoolean": false}),
                false,
            ),
            (
                json!({"resourceType": "Patient", "deceasedDateTime": "2015-02-14T13:42:00+10:00"}),
                true,
            ),
            (json!({"resourceType": "Patient"}), false),
        ];
        for (resource, expected) in cases {
            assert_eq!(
                eval_json(expr, &resource),
                vec![json!(expected)],
                "{resource}"
            );
        }
    }

    #[test]
    fn three_valued_logic() {
        let r = json!({"resourceType": "Basic"});
        for (expr, expected) in [
            ("true and {}", None),
            ("false and {}", Some(false)),
            ("true or {}", Some(true)),
            ("false or {}", None),
            ("true xor false", Some(true)),
            ("{} xor false", None),
            ("false implies {}", Some(true)),
            ("true implies {}", None),
            ("{} implies true", Some(true)),
            ("{}.not()", None),
            ("true.not()", Some(false)),
            ("{}.empty()", Some(true)),
            ("{} ~ {}", Some(true)),
        ] {
            let got = eval_json(expr, &r);
            let expected: Vec<Value> = expected.map(Value::Bool).into_iter().collect();
            assert_eq!(got, expected, "{expr}");
        }
    }

    #[test]
    fn resolve_checks_the_reference_type() {
        let p = patient();
        assert_eq!(
            eval_json(
                "Patient.managingOrganization.where(resolve() is Organization)",
                &p
            )
            .len(),
            1
        );
        assert!(
            eval_json(
                "Patient.managingOrganization.where(resolve() is Patient)",
                &p
            )
            .is_empty()
        );
        // Absolute with version, contained, and a type from `Reference.type`.
        assert_eq!(
            eval_json(
                "Patient.generalPractitioner.where(resolve() is Practitioner)",
                &p
            )
            .len(),
            2
        );
        assert_eq!(
            eval_json(
                "Patient.generalPractitioner.where(resolve() is RelatedPerson)",
                &p
            )
            .len(),
            1
        );
        assert_eq!(
            eval_json("Patient.generalPractitioner.resolve().id", &p),
            vec![json!("pr1"), json!("c1")]
        );
        assert_eq!(
            eval_json("Patient.managingOrganization.resolve() is Resource", &p),
            vec![json!(true)]
        );
        let urn = json!({"resourceType": "Observation", "subject": {"reference": "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a"}});
        assert!(eval_json("Observation.subject.where(resolve() is Patient)", &urn).is_empty());
    }

    #[test]
    fn extensions() {
        let p = patient();
        assert_eq!(
            eval_json(
                "Patient.extension('http://example.org/race').value.code",
                &p
            ),
            vec![json!("2106-3")]
        );
        assert_eq!(
            types(
                "Patient.extension.where(url='http://example.org/birthPlace').value",
                &p
            ),
            vec![Some("Address")]
        );
        assert_eq!(
            eval_json("Patient.extension.value.first().code", &p),
            vec![json!("2106-3")]
        );
        assert_eq!(
            eval_json("Patient.extension.last().value.city", &p),
            vec![json!("Springfield")]
        );
        assert_eq!(
            eval_json("Patient.extension.tail().count()", &p),
            vec![json!(1)]
        );
        assert_eq!(
            eval_json("Patient.birthDate.hasValue()", &p),
            vec![json!(true)]
        );
        assert_eq!(eval_json("Patient.name.hasValue()", &p), vec![json!(false)]);
        assert_eq!(eval_json("%resource.gender", &p), vec![json!("male")]);
        assert_eq!(
            eval_json("Patient.name.select(given.first())", &p),
            vec![json!("Peter"), json!("Jim")]
        );
        assert_eq!(
            eval_json("Patient.name.exists(family.exists())", &p),
            vec![json!(true)]
        );
        assert_eq!(
            eval_json("Patient.name.all(given.exists())", &p),
            vec![json!(true)]
        );
    }

    #[test]
    fn union_removes_duplicates() {
        let p = patient();
        assert_eq!(
            eval_json("Patient.gender | Patient.gender | Patient.id", &p),
            vec![json!("male"), json!("p1")]
        );
        assert_eq!(
            eval_json("'a' | 'a' | 'b'", &p),
            vec![json!("a"), json!("b")]
        );
    }

    #[test]
    fn indexer_and_embedded_resources() {
        let bundle = json!({
            "resourceType": "Bundle",
            "entry": [
                {"resource": {"resourceType": "Composition", "id": "c"}},
                {"resource": {"resourceType": "Patient", "id": "p"}}
            ]
        });
        let got = parse("Bundle.entry[0].resource").map(|e| evaluate(&e, &bundle));
        let Ok([node]) = got.as_deref() else {
            panic!("one node expected: {got:?}");
        };
        assert_eq!(node.fhir_type(), Some("Composition"));
        assert_eq!(
            eval_json("Bundle.entry.resource.ofType(Patient).id", &bundle),
            vec![json!("p")]
        );
    }
}
