//! CloudWatch metric math as the simulated cloud evaluates it: arithmetic (`+ - * /`, unary
//! minus, parentheses, numbers) over time series and scalars, `ABS`, `FILL(series, value)`
//! and `PERIOD(series)`. Arithmetic between two series keeps the timestamps both have, as
//! CloudWatch does; a division by zero gives no datapoint. Any other function is an error
//! that names it, never a silent zero.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};

use crate::sources::cloudwatch::Points;

#[derive(Clone, Debug)]
enum Value {
    Scalar(f64),
    Series(BTreeMap<DateTime<Utc>, f64>),
}

/// Evaluates `expr`, whose identifiers are ids of `inputs`.
pub fn evaluate(expr: &str, inputs: &HashMap<String, Points>) -> Result<Points, String> {
    let tokens = lex(expr)?;
    let mut p = Parser {
        tokens,
        at: 0,
        inputs,
    };
    let v = p.expr()?;
    if p.at != p.tokens.len() {
        return Err(format!("unexpected `{}`", p.tokens[p.at].text()));
    }
    Ok(match v {
        Value::Series(s) => s.into_iter().filter(|(_, v)| v.is_finite()).collect(),
        // A constant expression has no timestamps of its own.
        Value::Scalar(_) => Vec::new(),
    })
}

#[derive(Clone, Debug, PartialEq)]
enum Token {
    Num(f64),
    Ident(String),
    Op(char),
}

impl Token {
    fn text(&self) -> String {
        match self {
            Token::Num(x) => x.to_string(),
            Token::Ident(s) => s.clone(),
            Token::Op(c) => c.to_string(),
        }
    }
}

fn lex(s: &str) -> Result<Vec<Token>, String> {
    let mut out = Vec::new();
    let b: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_whitespace() {
            i += 1;
        } else if c.is_ascii_digit() || c == '.' {
            let start = i;
            while i < b.len()
                && (b[i].is_ascii_digit()
                    || b[i] == '.'
                    || b[i] == 'e'
                    || b[i] == 'E'
                    || ((b[i] == '-' || b[i] == '+') && matches!(b[i - 1], 'e' | 'E')))
            {
                i += 1;
            }
            let text: String = b[start..i].iter().collect();
            out.push(Token::Num(
                text.parse().map_err(|_| format!("bad number `{text}`"))?,
            ));
        } else if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == '_') {
                i += 1;
            }
            out.push(Token::Ident(b[start..i].iter().collect()));
        } else if "+-*/(),".contains(c) {
            out.push(Token::Op(c));
            i += 1;
        } else {
            return Err(format!("`{c}` is not modeled in metric math"));
        }
    }
    Ok(out)
}

struct Parser<'a> {
    tokens: Vec<Token>,
    at: usize,
    inputs: &'a HashMap<String, Points>,
}

impl Parser<'_> {
    fn peek_op(&self) -> Option<char> {
        match self.tokens.get(self.at) {
            Some(Token::Op(c)) => Some(*c),
            _ => None,
        }
    }

    fn expect(&mut self, c: char) -> Result<(), String> {
        if self.peek_op() == Some(c) {
            self.at += 1;
            Ok(())
        } else {
            Err(format!("expected `{c}`"))
        }
    }

    fn expr(&mut self) -> Result<Value, String> {
        let mut v = self.term()?;
        while let Some(op @ ('+' | '-')) = self.peek_op() {
            self.at += 1;
            let r = self.term()?;
            v = binary(v, r, op);
        }
        Ok(v)
    }

    fn term(&mut self) -> Result<Value, String> {
        let mut v = self.unary()?;
        while let Some(op @ ('*' | '/')) = self.peek_op() {
            self.at += 1;
            let r = self.unary()?;
            v = binary(v, r, op);
        }
        Ok(v)
    }

    fn unary(&mut self) -> Result<Value, String> {
        if self.peek_op() == Some('-') {
            self.at += 1;
            let v = self.unary()?;
            return Ok(binary(Value::Scalar(-1.0), v, '*'));
        }
        self.atom()
    }

    fn atom(&mut self) -> Result<Value, String> {
        let Some(tok) = self.tokens.get(self.at).cloned() else {
            return Err("the expression ends early".into());
        };
        self.at += 1;
        match tok {
            Token::Num(x) => Ok(Value::Scalar(x)),
            Token::Op('(') => {
                let v = self.expr()?;
                self.expect(')')?;
                Ok(v)
            }
            Token::Op(c) => Err(format!("unexpected `{c}`")),
            Token::Ident(name) if self.peek_op() == Some('(') => {
                self.at += 1;
                let mut args = vec![self.expr()?];
                while self.peek_op() == Some(',') {
                    self.at += 1;
                    args.push(self.expr()?);
                }
                self.expect(')')?;
                call(&name, args)
            }
            Token::Ident(name) => match self.inputs.get(&name) {
                Some(points) => Ok(Value::Series(points.iter().copied().collect())),
                None => Err(format!("`{name}` names no query of the call")),
            },
        }
    }
}

fn call(name: &str, mut args: Vec<Value>) -> Result<Value, String> {
    match (name, args.len()) {
        ("ABS", 1) => Ok(map(args.remove(0), f64::abs)),
        ("FILL", 2) => {
            let fill = args.remove(1);
            let Value::Series(mut s) = args.remove(0) else {
                return Err("FILL takes a time series first".into());
            };
            match fill {
                // Without a grid of its own, a series filled with a constant has no gaps
                // to fill among the timestamps it has.
                Value::Scalar(_) => Ok(Value::Series(s)),
                Value::Series(other) => {
                    for (t, v) in other {
                        s.entry(t).or_insert(v);
                    }
                    Ok(Value::Series(s))
                }
            }
        }
        ("PERIOD", 1) => match &args[0] {
            Value::Series(s) => {
                let mut ts = s.keys();
                match (ts.next(), ts.next()) {
                    (Some(a), Some(b)) => Ok(Value::Scalar((*b - *a).num_seconds() as f64)),
                    _ => Err("PERIOD of a series with fewer than two datapoints".into()),
                }
            }
            Value::Scalar(_) => Err("PERIOD takes a time series".into()),
        },
        _ => Err(format!(
            "`{name}` with {} argument(s) is not modeled by the simulated CloudWatch (ABS, FILL and PERIOD are)",
            args.len()
        )),
    }
}

fn map(v: Value, f: impl Fn(f64) -> f64) -> Value {
    match v {
        Value::Scalar(x) => Value::Scalar(f(x)),
        Value::Series(s) => Value::Series(s.into_iter().map(|(t, x)| (t, f(x))).collect()),
    }
}

fn apply(a: f64, b: f64, op: char) -> f64 {
    match op {
        '+' => a + b,
        '-' => a - b,
        '*' => a * b,
        _ => a / b,
    }
}

fn binary(a: Value, b: Value, op: char) -> Value {
    match (a, b) {
        (Value::Scalar(x), Value::Scalar(y)) => Value::Scalar(apply(x, y, op)),
        (Value::Series(s), Value::Scalar(y)) => {
            Value::Series(s.into_iter().map(|(t, x)| (t, apply(x, y, op))).collect())
        }
        (Value::Scalar(x), Value::Series(s)) => {
            Value::Series(s.into_iter().map(|(t, y)| (t, apply(x, y, op))).collect())
        }
        (Value::Series(s), Value::Series(r)) => Value::Series(
            s.into_iter()
                .filter_map(|(t, x)| r.get(&t).map(|y| (t, apply(x, *y, op))))
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(s, 0).unwrap()
    }

    fn inputs() -> HashMap<String, Points> {
        HashMap::from([
            ("q0".to_string(), vec![(t(0), 120.0), (t(60), 600.0)]),
            ("q1".to_string(), vec![(t(60), 3.0), (t(120), 4.0)]),
        ])
    }

    #[test]
    fn arithmetic_over_series_and_scalars() {
        assert_eq!(
            evaluate("q0 / 60", &inputs()).unwrap(),
            vec![(t(0), 2.0), (t(60), 10.0)]
        );
        assert_eq!(
            evaluate("-(q0 - 20) * 2 + 1e1", &inputs()).unwrap(),
            vec![(t(0), -190.0), (t(60), -1150.0)]
        );
    }

    #[test]
    fn two_series_keep_the_timestamps_both_have() {
        assert_eq!(
            evaluate("q0 / q1 / 60", &inputs()).unwrap(),
            vec![(t(60), 600.0 / 3.0 / 60.0)]
        );
        assert_eq!(
            evaluate("FILL(q0, q1) + 0", &inputs()).unwrap(),
            vec![(t(0), 120.0), (t(60), 600.0), (t(120), 4.0)]
        );
    }

    #[test]
    fn a_division_by_zero_gives_no_datapoint() {
        let mut i = inputs();
        i.insert("z".into(), vec![(t(0), 0.0), (t(60), 2.0)]);
        assert_eq!(evaluate("q0 / z", &i).unwrap(), vec![(t(60), 300.0)]);
    }

    #[test]
    fn what_is_not_modeled_is_an_error_naming_it() {
        let e = evaluate("ANOMALY_DETECTION_BAND(q0)", &inputs()).unwrap_err();
        assert!(e.contains("ANOMALY_DETECTION_BAND"), "{e}");
        assert!(evaluate("q0 / nope", &inputs())
            .unwrap_err()
            .contains("nope"));
        assert!(evaluate("q0 +", &inputs()).is_err());
        assert!(evaluate("q0 ^ 2", &inputs()).is_err());
    }
}
