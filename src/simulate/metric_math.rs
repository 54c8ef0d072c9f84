//! CloudWatch metric math as the simulated cloud evaluates it: the arithmetic expressions
//! capstan's history reader evaluates too (`+ - * /`, unary signs, parentheses, numbers),
//! parsed by the same parser ([`history::parse`]) and combined the same way
//! ([`history::combine`]): series are combined at the timestamps they all have, and a
//! division by zero gives no datapoint. A metric-math function is an error that names it,
//! never a silent zero.

use std::collections::HashMap;

use crate::sources::cloudwatch::Points;
use crate::sources::history::{self, Expr, PlanError};

/// Evaluates `expr`, whose identifiers are query ids of `inputs`.
pub fn evaluate(expr: &str, inputs: &HashMap<String, Points>) -> Result<Points, String> {
    let mut series: Vec<Points> = Vec::new();
    let tree = history::parse(expr, &mut |name: &str| {
        let points = inputs
            .get(name)
            .ok_or_else(|| PlanError::Invalid(format!("`{name}` names no query of the call")))?;
        series.push(points.clone());
        Ok(Expr::Leaf(series.len() - 1))
    })
    .map_err(|e| match e {
        PlanError::Functions(what) => {
            format!("{what}, a metric-math function the simulated CloudWatch does not model")
        }
        PlanError::Invalid(why) => why,
    })?;
    // A constant expression has no timestamps of its own.
    Ok(history::combine(&tree, &series))
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};

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
