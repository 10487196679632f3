//! Lexer and precedence-climbing parser: text → [`Expr`], untyped. Every node keeps the byte
//! range of its text, which the checker quotes in errors, and whether it was parenthesized,
//! which the precedence check needs.
//!
//! Longer than 400 lines: lexer and parser share the byte ranges errors quote
//! and are one grammar; split, a token's meaning would be read in two files.

use super::SkbExprError;

/// How deeply expressions may nest; a bound on the parser's recursion, far above real use.
const MAX_NESTING: usize = 64;
/// The most operators an expression may have: checking and code generation recurse along
/// chains like `a || b || …`, so this bounds their stack as well.
pub const MAX_OPERATORS: usize = 256;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expr {
    pub kind: ExprKind,
    /// Byte range in the source.
    pub span: (usize, usize),
    pub parens: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExprKind {
    Int { value: u64, unsigned: bool },
    Str(Vec<u8>),
    Name(String),
    Member { base: Box<Expr>, field: String, arrow: bool },
    Index { base: Box<Expr>, index: Box<Expr> },
    Unary(UnOp, Box<Expr>),
    Binary(BinOp, Box<Expr>, Box<Expr>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnOp {
    Not,
    BitNot,
    Neg,
    Plus,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinOp {
    Or,
    And,
    BitOr,
    BitXor,
    BitAnd,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Shl,
    Shr,
    Add,
    Sub,
    Mul,
    Div,
    Mod,
}

impl BinOp {
    /// C's precedence, 1 the loosest.
    fn precedence(self) -> u8 {
        match self {
            Self::Or => 1,
            Self::And => 2,
            Self::BitOr => 3,
            Self::BitXor => 4,
            Self::BitAnd => 5,
            Self::Eq | Self::Ne => 6,
            Self::Lt | Self::Le | Self::Gt | Self::Ge => 7,
            Self::Shl | Self::Shr => 8,
            Self::Add | Self::Sub => 9,
            Self::Mul | Self::Div | Self::Mod => 10,
        }
    }

    pub fn is_comparison(self) -> bool {
        matches!(self, Self::Eq | Self::Ne | Self::Lt | Self::Le | Self::Gt | Self::Ge)
    }

    pub fn symbol(self) -> &'static str {
        match self {
            Self::Or => "||",
            Self::And => "&&",
            Self::BitOr => "|",
            Self::BitXor => "^",
            Self::BitAnd => "&",
            Self::Eq => "==",
            Self::Ne => "!=",
            Self::Lt => "<",
            Self::Le => "<=",
            Self::Gt => ">",
            Self::Ge => ">=",
            Self::Shl => "<<",
            Self::Shr => ">>",
            Self::Add => "+",
            Self::Sub => "-",
            Self::Mul => "*",
            Self::Div => "/",
            Self::Mod => "%",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Tok {
    Int {
        value: u64,
        unsigned: bool,
    },
    Str(Vec<u8>),
    Ident(String),
    /// Operators and punctuation, as written (`=` already turned into `==`).
    Punct(&'static str),
}

/// Operators, longest first so that `<<` is not read as two `<`.
const PUNCTS: [&str; 27] = [
    "->", "<<", ">>", "<=", ">=", "==", "!=", "&&", "||", "=", "<", ">", "!", "~", "-", "+", "*", "/", "%", "&", "|",
    "^", "(", ")", "[", "]", ".",
];

fn syntax(at: usize, message: impl Into<String>) -> SkbExprError {
    SkbExprError::Syntax { at, message: message.into() }
}

/// Tokens with their byte ranges.
fn lex(src: &str) -> Result<Vec<(Tok, usize, usize)>, SkbExprError> {
    let bytes = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let start = i;
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let tok = if c.is_ascii_digit() {
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                i += 1;
            }
            number(&src[start..i]).map_err(|m| syntax(start, m))?
        } else if c.is_ascii_alphabetic() || c == b'_' {
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                i += 1;
            }
            Tok::Ident(src[start..i].to_owned())
        } else if c == b'"' {
            let (s, end) = string(bytes, start)?;
            i = end;
            Tok::Str(s)
        } else if let Some(p) = PUNCTS.iter().find(|p| src[i..].starts_with(**p)) {
            i += p.len();
            Tok::Punct(if *p == "=" { "==" } else { p })
        } else {
            let ch = src[i..].chars().next().unwrap_or('?');
            return Err(syntax(start, format!("unexpected character `{ch}`")));
        };
        out.push((tok, start, i));
    }
    Ok(out)
}

fn number(text: &str) -> Result<Tok, String> {
    let lower = text.to_ascii_lowercase();
    let digits = lower.trim_end_matches(['u', 'l']);
    let suffix = &lower[digits.len()..];
    if suffix.matches('u').count() > 1 || suffix.matches('l').count() > 2 {
        return Err(format!("bad integer suffix in `{text}`"));
    }
    let (radix, body) = match digits.get(..2) {
        Some("0x") => (16, &digits[2..]),
        Some("0o") => (8, &digits[2..]),
        Some("0b") => (2, &digits[2..]),
        _ if digits.len() > 1 && digits.starts_with('0') => {
            return Err(format!("`{text}`: write octal as 0o{} (C's leading 0 is ambiguous)", &digits[1..]));
        }
        _ => (10, digits),
    };
    let value = u64::from_str_radix(body, radix).map_err(|e| format!("bad integer `{text}`: {e}"))?;
    Ok(Tok::Int { value, unsigned: suffix.contains('u') })
}

/// A string literal starting at `bytes[start] == b'"'`; its bytes and the offset after it.
fn string(bytes: &[u8], start: usize) -> Result<(Vec<u8>, usize), SkbExprError> {
    let mut out = Vec::new();
    let mut i = start + 1;
    loop {
        match bytes.get(i) {
            None => return Err(syntax(start, "unterminated string")),
            Some(b'"') => return Ok((out, i + 1)),
            Some(b'\\') => {
                let (byte, len) = match bytes.get(i + 1) {
                    Some(b'\\') => (b'\\', 2),
                    Some(b'"') => (b'"', 2),
                    Some(b'n') => (b'\n', 2),
                    Some(b't') => (b'\t', 2),
                    Some(b'0') => (0, 2),
                    Some(b'x') => {
                        let hex = bytes.get(i + 2..i + 4).and_then(|h| std::str::from_utf8(h).ok());
                        let byte = hex.and_then(|h| u8::from_str_radix(h, 16).ok());
                        (byte.ok_or_else(|| syntax(i, "\\x takes two hex digits"))?, 4)
                    }
                    _ => return Err(syntax(i, "unknown escape; use \\\\ \\\" \\n \\t \\0 or \\xHH")),
                };
                out.push(byte);
                i += len;
            }
            Some(&b) => {
                out.push(b);
                i += 1;
            }
        }
    }
}

struct Parser {
    toks: Vec<(Tok, usize, usize)>,
    pos: usize,
    len: usize,
    depth: usize,
    operators: usize,
}

pub fn parse(src: &str) -> Result<Expr, SkbExprError> {
    let mut p = Parser { toks: lex(src)?, pos: 0, len: src.len(), depth: 0, operators: 0 };
    if p.toks.is_empty() {
        return Err(syntax(0, "empty expression"));
    }
    let expr = p.binary(1)?;
    match p.toks.get(p.pos) {
        None => Ok(expr),
        Some((tok, at, _)) => Err(syntax(*at, format!("unexpected {} after a complete expression", describe(tok)))),
    }
}

fn describe(tok: &Tok) -> String {
    match tok {
        Tok::Int { value, .. } => format!("number {value}"),
        Tok::Str(_) => "string".to_owned(),
        Tok::Ident(name) => format!("`{name}`"),
        Tok::Punct(p) => format!("`{p}`"),
    }
}

fn binop(p: &str) -> Option<BinOp> {
    Some(match p {
        "||" => BinOp::Or,
        "&&" => BinOp::And,
        "|" => BinOp::BitOr,
        "^" => BinOp::BitXor,
        "&" => BinOp::BitAnd,
        "==" => BinOp::Eq,
        "!=" => BinOp::Ne,
        "<" => BinOp::Lt,
        "<=" => BinOp::Le,
        ">" => BinOp::Gt,
        ">=" => BinOp::Ge,
        "<<" => BinOp::Shl,
        ">>" => BinOp::Shr,
        "+" => BinOp::Add,
        "-" => BinOp::Sub,
        "*" => BinOp::Mul,
        "/" => BinOp::Div,
        "%" => BinOp::Mod,
        _ => return None,
    })
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|t| &t.0)
    }

    /// Where the next token starts (the end of the text when there is none).
    fn here(&self) -> usize {
        self.toks.get(self.pos).map_or(self.len, |t| t.1)
    }

    fn prev_end(&self) -> usize {
        self.toks[self.pos - 1].2
    }

    fn eat(&mut self, punct: &str) -> bool {
        if self.peek() == Some(&Tok::Punct(match_punct(punct))) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, punct: &str) -> Result<(), SkbExprError> {
        if self.eat(punct) {
            return Ok(());
        }
        let found = self.peek().map_or("the end".to_owned(), describe);
        Err(syntax(self.here(), format!("expected `{punct}`, found {found}")))
    }

    /// Binary operators binding at least as tightly as `min` (precedence climbing; C's binary
    /// operators are all left-associative).
    fn binary(&mut self, min: u8) -> Result<Expr, SkbExprError> {
        let mut left = self.unary()?;
        while let Some(Tok::Punct(p)) = self.peek()
            && let Some(op) = binop(p)
            && op.precedence() >= min
        {
            self.count_operator()?;
            self.pos += 1;
            let right = self.binary(op.precedence() + 1)?;
            let span = (left.span.0, right.span.1);
            left = Expr { kind: ExprKind::Binary(op, Box::new(left), Box::new(right)), span, parens: false };
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Expr, SkbExprError> {
        let start = self.here();
        let op = match self.peek() {
            Some(Tok::Punct("!")) => UnOp::Not,
            Some(Tok::Punct("~")) => UnOp::BitNot,
            Some(Tok::Punct("-")) => UnOp::Neg,
            Some(Tok::Punct("+")) => UnOp::Plus,
            _ => return self.postfix(),
        };
        self.count_operator()?;
        self.pos += 1;
        let operand = self.nested(Self::unary)?;
        let span = (start, operand.span.1);
        Ok(Expr { kind: ExprKind::Unary(op, Box::new(operand)), span, parens: false })
    }

    fn count_operator(&mut self) -> Result<(), SkbExprError> {
        self.operators += 1;
        if self.operators > MAX_OPERATORS {
            return Err(syntax(self.here(), format!("more than {MAX_OPERATORS} operators")));
        }
        Ok(())
    }

    /// Runs `f` one nesting level deeper.
    fn nested(&mut self, f: fn(&mut Self) -> Result<Expr, SkbExprError>) -> Result<Expr, SkbExprError> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return Err(syntax(self.here(), format!("nested more than {MAX_NESTING} deep")));
        }
        let result = f(self);
        self.depth -= 1;
        result
    }

    fn postfix(&mut self) -> Result<Expr, SkbExprError> {
        let mut expr = self.primary()?;
        loop {
            let start = expr.span.0;
            let arrow = if self.eat("->") {
                true
            } else if self.eat(".") {
                false
            } else if self.eat("[") {
                let index = self.nested(|p| p.binary(1))?;
                self.expect("]")?;
                let kind = ExprKind::Index { base: Box::new(expr), index: Box::new(index) };
                expr = Expr { kind, span: (start, self.prev_end()), parens: false };
                continue;
            } else {
                return Ok(expr);
            };
            let Some(Tok::Ident(field)) = self.peek().cloned() else {
                let found = self.peek().map_or("the end".to_owned(), describe);
                return Err(syntax(self.here(), format!("expected a member name, found {found}")));
            };
            self.pos += 1;
            let kind = ExprKind::Member { base: Box::new(expr), field, arrow };
            expr = Expr { kind, span: (start, self.prev_end()), parens: false };
        }
    }

    fn primary(&mut self) -> Result<Expr, SkbExprError> {
        let start = self.here();
        let Some(tok) = self.peek().cloned() else {
            return Err(syntax(start, "expected an operand, found the end"));
        };
        self.pos += 1;
        let kind = match tok {
            Tok::Int { value, unsigned } => ExprKind::Int { value, unsigned },
            Tok::Str(s) => ExprKind::Str(s),
            Tok::Ident(name) => ExprKind::Name(name),
            Tok::Punct("(") => {
                let mut inner = self.nested(|p| p.binary(1))?;
                self.expect(")")?;
                inner.span = (start, self.prev_end());
                inner.parens = true;
                return Ok(inner);
            }
            Tok::Punct(p) => return Err(syntax(start, format!("expected an operand, found `{p}`"))),
        };
        Ok(Expr { kind, span: (start, self.prev_end()), parens: false })
    }
}

/// The `'static` spelling of a punctuator, for comparing with tokens.
fn match_punct(p: &str) -> &'static str {
    PUNCTS.iter().find(|q| **q == p).copied().unwrap_or("")
}
