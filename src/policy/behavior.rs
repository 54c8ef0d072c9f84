//! Kubernetes HPA behavior: stabilization windows and rate-limit policies, with the same
//! arithmetic as `horizontal.go` (stabilizeRecommendationWithBehaviors,
//! calculateScaleUpLimitWithScalingRules, calculateScaleDownLimitWithBehaviors).

use super::clock::Stamp;

use crate::config::{RateKind, Rules, Select};

use super::history::History;

/// Stabilizes `desired` against past recommendations: a scale-up goes only as far as the
/// lowest recommendation of the scale-up window, a scale-down only as far as the highest of
/// the scale-down window (both windows include `desired` itself).
///
/// Returns the stabilized capacity and, when the windows held it back, the window bounds.
pub fn stabilize(
    now: Stamp,
    current: u32,
    desired: u32,
    history: &History,
    up: &Rules,
    down: &Rules,
) -> (u32, Option<(u32, u32)>) {
    let up_cutoff = now.shift(-(up.stabilization_window_secs as i64));
    let down_cutoff = now.shift(-(down.stabilization_window_secs as i64));
    let mut up_rec = desired;
    let mut down_rec = desired;
    for r in &history.recommendations {
        if r.at > up_cutoff {
            up_rec = up_rec.min(r.capacity);
        }
        if r.at > down_cutoff {
            down_rec = down_rec.max(r.capacity);
        }
    }
    let mut rec = current;
    if rec < up_rec {
        rec = up_rec;
    }
    if rec > down_rec {
        rec = down_rec;
    }
    let held = (rec != desired).then_some((up_rec, down_rec));
    (rec, held)
}

/// The highest capacity the scale-up rate policies allow now (never below `current`).
pub fn scale_up_limit(now: Stamp, current: u32, history: &History, rules: &Rules) -> u32 {
    let mut result: Option<i64> = None;
    if rules.select == Select::Disabled {
        return current;
    }
    for p in &rules.policies {
        let start = period_start(now, current, history, p.period_secs);
        let proposed = match p.kind {
            RateKind::Pods => start + p.value as i64,
            // Rounded up so a small percent of a small count still moves.
            RateKind::Percent => (start as f64 * (1.0 + p.value as f64 / 100.0)).ceil() as i64,
        };
        result = Some(match (result, rules.select) {
            (None, _) => proposed,
            (Some(r), Select::Min) => r.min(proposed),
            (Some(r), _) => r.max(proposed),
        });
    }
    result
        .unwrap_or(current as i64)
        .max(current as i64)
        .min(u32::MAX as i64) as u32
}

/// The lowest capacity the scale-down rate policies allow now (never above `current`).
pub fn scale_down_limit(now: Stamp, current: u32, history: &History, rules: &Rules) -> u32 {
    let mut result: Option<i64> = None;
    if rules.select == Select::Disabled {
        return current;
    }
    for p in &rules.policies {
        let start = period_start(now, current, history, p.period_secs);
        let proposed = match p.kind {
            RateKind::Pods => start - p.value as i64,
            // Truncated, as HPA does: never removes more than the percent.
            RateKind::Percent => (start as f64 * (1.0 - p.value as f64 / 100.0)) as i64,
        };
        // "max" selects the policy allowing the largest change, i.e. the lowest limit.
        result = Some(match (result, rules.select) {
            (None, _) => proposed,
            (Some(r), Select::Min) => r.max(proposed),
            (Some(r), _) => r.min(proposed),
        });
    }
    result.unwrap_or(current as i64).min(current as i64).max(0) as u32
}

/// Capacity at the start of the period: current minus what was added plus what was removed
/// within it.
fn period_start(now: Stamp, current: u32, history: &History, period_secs: u64) -> i64 {
    current as i64 - history.added_within(now, period_secs) as i64
        + history.removed_within(now, period_secs) as i64
}

#[cfg(test)]
mod tests {
    //! Cases from Kubernetes' horizontal_test.go (TestScalingWithRules,
    //! TestNormalizeDesiredReplicasWithBehavior, TestCalculateScale*Limit*).
    use super::*;
    use crate::config::{RatePolicy, Rules, Select};
    use crate::policy::history::{Recommendation, ScaleEvent};
    use chrono::{DateTime, Utc};

    fn t0() -> Stamp {
        "2026-11-27T10:00:00Z"
            .parse::<DateTime<Utc>>()
            .unwrap()
            .into()
    }

    /// horizontal_test.go's generateScalingRules: select Max, a policy only when its value
    /// is non-zero.
    fn gen(pods: u32, pods_period: u64, pct: u32, pct_period: u64, window: u64) -> Rules {
        let mut policies = Vec::new();
        if pods != 0 {
            policies.push(RatePolicy {
                kind: RateKind::Pods,
                value: pods,
                period_secs: pods_period,
            });
        }
        if pct != 0 {
            policies.push(RatePolicy {
                kind: RateKind::Percent,
                value: pct,
                period_secs: pct_period,
            });
        }
        Rules {
            stabilization_window_secs: window,
            select: Select::Max,
            policies,
        }
    }

    /// Events spread evenly over the last 120 s, as the Go test's generateEventsUniformDistribution.
    fn events(changes: &[u32]) -> Vec<ScaleEvent> {
        let n = changes.len() as i64;
        changes
            .iter()
            .enumerate()
            .map(|(i, c)| ScaleEvent {
                at: t0().shift(-(120 - 120 * i as i64 / n.max(1)) + 1),
                change: *c,
            })
            .collect()
    }

    /// convertDesiredReplicasWithBehaviorRate: rate limits plus min/max.
    #[allow(clippy::too_many_arguments)]
    fn rate(
        cur: u32,
        desired: u32,
        min: u32,
        max: u32,
        up: &Rules,
        down: &Rules,
        ups: &[u32],
        downs: &[u32],
    ) -> u32 {
        let h = History {
            scale_ups: events(ups),
            scale_downs: events(downs),
            ..History::default()
        };
        if desired > cur {
            desired.min(max.min(scale_up_limit(t0(), cur, &h, up)))
        } else if desired < cur {
            desired.max(min.max(scale_down_limit(t0(), cur, &h, down)))
        } else {
            cur
        }
    }

    #[test]
    fn hpa_scaling_with_rules() {
        let d_up = Rules::default_up();
        let d_down = Rules::default_down();
        struct Case {
            name: &'static str,
            cur: u32,
            desired: u32,
            min: u32,
            max: u32,
            up: Rules,
            down: Rules,
            ups: &'static [u32],
            downs: &'static [u32],
            want: u32,
        }
        let cases = vec![
            Case {
                name: "scaleUp with default behavior",
                cur: 10,
                desired: 50,
                min: 1,
                max: 1000,
                up: d_up.clone(),
                down: d_down.clone(),
                ups: &[],
                downs: &[],
                want: 20,
            },
            Case {
                name: "scaleUp with pods policy larger than percent",
                cur: 10,
                desired: 500,
                min: 1,
                max: 1000,
                up: gen(100, 60, 100, 60, 0),
                down: d_down.clone(),
                ups: &[],
                downs: &[],
                want: 110,
            },
            Case {
                name: "scaleUp with percent policy larger than pods",
                cur: 10,
                desired: 500,
                min: 1,
                max: 1000,
                up: gen(2, 60, 100, 60, 0),
                down: d_down.clone(),
                ups: &[],
                downs: &[],
                want: 20,
            },
            Case {
                name: "scaleUp with pod policy limitation",
                cur: 10,
                desired: 50,
                min: 1,
                max: 1000,
                up: gen(30, 60, 0, 0, 0),
                down: d_down.clone(),
                ups: &[],
                downs: &[],
                want: 40,
            },
            Case {
                name: "scaleUp with percent policy limitation",
                cur: 10,
                desired: 50,
                min: 1,
                max: 1000,
                up: gen(0, 0, 200, 60, 0),
                down: d_down.clone(),
                ups: &[],
                downs: &[],
                want: 30,
            },
            Case {
                name: "scaleUp 1% rounds up",
                cur: 3,
                desired: 1000,
                min: 1,
                max: 2000,
                up: gen(0, 0, 1, 60, 0),
                down: d_down.clone(),
                ups: &[],
                downs: &[],
                want: 4,
            },
            Case {
                name: "scaleUp limited by maxReplicas",
                cur: 100,
                desired: 1000,
                min: 100,
                max: 150,
                up: d_up.clone(),
                down: d_down.clone(),
                ups: &[],
                downs: &[],
                want: 150,
            },
            Case {
                name: "scaleUp pods policy with past events",
                cur: 100,
                desired: 500,
                min: 1,
                max: 1000,
                up: gen(150, 120, 0, 0, 0),
                down: d_down.clone(),
                ups: &[1, 5, 9],
                downs: &[],
                want: 235,
            },
            Case {
                name: "scaleUp percent policy with past events",
                cur: 100,
                desired: 500,
                min: 1,
                max: 1000,
                up: gen(0, 0, 200, 120, 0),
                down: d_down.clone(),
                ups: &[1, 5, 9],
                downs: &[],
                want: 255,
            },
            Case {
                name: "scaleUp budget used by past events",
                cur: 100,
                desired: 500,
                min: 1,
                max: 1000,
                up: gen(5, 120, 0, 0, 0),
                down: d_down.clone(),
                ups: &[1, 5, 9],
                downs: &[],
                want: 100,
            },
            Case {
                name: "scaleUp with up and down events",
                cur: 6,
                desired: 24,
                min: 1,
                max: 1000,
                up: gen(0, 0, 300, 300, 0),
                down: d_down.clone(),
                ups: &[4],
                downs: &[2],
                want: 16,
            },
            Case {
                name: "scaleDown pods 20 vs 1%",
                cur: 100,
                desired: 2,
                min: 1,
                max: 1000,
                up: d_up.clone(),
                down: gen(20, 60, 1, 60, 300),
                ups: &[],
                downs: &[],
                want: 80,
            },
            Case {
                name: "scaleDown pods 2 vs 1%",
                cur: 100,
                desired: 2,
                min: 1,
                max: 1000,
                up: d_up.clone(),
                down: gen(2, 60, 1, 60, 300),
                ups: &[],
                downs: &[],
                want: 98,
            },
            Case {
                name: "scaleDown 1000 pods with user policy",
                cur: 1000,
                desired: 3,
                min: 3,
                max: 2000,
                up: d_up.clone(),
                down: gen(20, 60, 0, 0, 0),
                ups: &[],
                downs: &[],
                want: 980,
            },
            Case {
                name: "scaleDown 50% within range",
                cur: 10,
                desired: 5,
                min: 1,
                max: 1000,
                up: d_up.clone(),
                down: gen(0, 0, 50, 60, 300),
                ups: &[],
                downs: &[],
                want: 5,
            },
            Case {
                name: "scaleDown limited by minReplicas",
                cur: 10,
                desired: 2,
                min: 5,
                max: 1000,
                up: d_up.clone(),
                down: gen(0, 0, 100, 60, 300),
                ups: &[],
                downs: &[],
                want: 5,
            },
            Case {
                name: "scaleDown 50% with past events",
                cur: 100,
                desired: 0,
                min: 1,
                max: 1000,
                up: d_up.clone(),
                down: gen(0, 0, 50, 120, 300),
                ups: &[],
                downs: &[2, 4, 6],
                want: 56,
            },
            Case {
                name: "scaleDown with up and down events",
                cur: 10,
                desired: 1,
                min: 1,
                max: 1000,
                up: d_up.clone(),
                down: gen(0, 0, 50, 180, 0),
                ups: &[2],
                downs: &[4],
                want: 6,
            },
            Case {
                name: "scaleDown blocked by past events",
                cur: 100,
                desired: 0,
                min: 1,
                max: 1000,
                up: d_up.clone(),
                down: gen(0, 0, 10, 120, 300),
                ups: &[],
                downs: &[10, 10, 10],
                want: 100,
            },
            Case {
                name: "scaleDown 1000% policy",
                cur: 10,
                desired: 5,
                min: 1,
                max: 1000,
                up: d_up.clone(),
                down: gen(0, 0, 1000, 120, 300),
                ups: &[],
                downs: &[10, 10, 10],
                want: 5,
            },
        ];
        for c in cases {
            let got = rate(
                c.cur, c.desired, c.min, c.max, &c.up, &c.down, c.ups, c.downs,
            );
            assert_eq!(got, c.want, "{}", c.name);
        }
    }

    #[test]
    fn hpa_limit_functions_with_select_min() {
        let rules = Rules {
            stabilization_window_secs: 0,
            select: Select::Min,
            policies: vec![
                RatePolicy {
                    kind: RateKind::Pods,
                    value: 2,
                    period_secs: 60,
                },
                RatePolicy {
                    kind: RateKind::Percent,
                    value: 50,
                    period_secs: 60,
                },
            ],
        };
        let h = History::default();
        assert_eq!(scale_up_limit(t0(), 1, &h, &rules), 2);
        assert_eq!(scale_down_limit(t0(), 5, &h, &rules), 3);
        let disabled = Rules {
            select: Select::Disabled,
            ..rules
        };
        assert_eq!(scale_up_limit(t0(), 5, &h, &disabled), 5);
        assert_eq!(scale_down_limit(t0(), 5, &h, &disabled), 5);
    }

    #[test]
    fn hpa_normalize_desired_replicas_with_behavior() {
        let w = |secs: u64| Rules {
            stabilization_window_secs: secs,
            ..Rules::default_up()
        };
        let recs = |list: &[(u32, i64)]| History {
            recommendations: list
                .iter()
                .map(|(c, age)| Recommendation {
                    at: t0().shift(-*age),
                    capacity: *c,
                })
                .collect(),
            ..History::default()
        };
        // (recommendations value@age-seconds, current, desired, up window, down window, expected)
        type Case<'a> = (&'a [(u32, i64)], u32, u32, u64, u64, u32);
        let cases: &[Case] = &[
            (&[(4, 120), (5, 60)], 100, 3, 0, 180, 5),
            (&[(4, 120), (5, 60)], 1, 7, 300, 0, 4),
            (&[(1, 120), (2, 60)], 100, 3, 300, 0, 3),
            (&[(4, 120), (5, 60)], 1, 3, 0, 300, 3),
            (
                &[(10, 6000), (6, 60), (5, 120), (9, 180)],
                1,
                100,
                300,
                0,
                5,
            ),
            (&[(2, 6000), (3, 180)], 2, 1, 300, 300, 2),
            (&[(2, 6000), (1, 180)], 2, 3, 300, 300, 2),
        ];
        for (i, (list, cur, desired, up, down, want)) in cases.iter().enumerate() {
            let (got, _) = stabilize(t0(), *cur, *desired, &recs(list), &w(*up), &w(*down));
            assert_eq!(got, *want, "case {i}");
        }
    }
}
