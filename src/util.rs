//! Small helpers shared by the I/O modules.

/// Awaits futures concurrently (in place, without spawning).
pub async fn join_all<F: std::future::Future>(futs: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    let mut pinned: Vec<std::pin::Pin<Box<F>>> = futs.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = (0..pinned.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in pinned.iter_mut().enumerate() {
            if out[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => out[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter()
        .map(|o| o.expect("every future completed"))
        .collect()
}

/// Like [`join_all`], with at most `limit` of the futures running at a time (AWS calls of a
/// tick: the rate limits pace them, this bounds the connections open at once).
pub async fn join_bounded<F: std::future::Future>(limit: usize, futs: Vec<F>) -> Vec<F::Output> {
    let permits = tokio::sync::Semaphore::new(limit.clamp(1, tokio::sync::Semaphore::MAX_PERMITS));
    let permits = &permits;
    join_all(futs.into_iter().map(|f| async move {
        let _permit = permits.acquire().await;
        f.await
    }))
    .await
}

/// AWS calls of one kind in flight at once within a tick.
pub const CALL_CONCURRENCY: usize = 16;

/// A cumulative histogram with fixed upper bounds (Prometheus semantics: `counts[i]` counts
/// the observations `<= bounds[i]`; `count` includes those above the last bound).
#[derive(Clone, Debug, PartialEq)]
pub struct Histogram {
    pub bounds: &'static [f64],
    pub counts: Vec<u64>,
    pub count: u64,
    pub sum: f64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: vec![0; bounds.len()],
            count: 0,
            sum: 0.0,
        }
    }

    pub fn observe(&mut self, v: f64) {
        if !v.is_finite() {
            return;
        }
        for (b, c) in self.bounds.iter().zip(self.counts.iter_mut()) {
            if v <= *b {
                *c += 1;
            }
        }
        self.count += 1;
        self.sum += v;
    }
}

#[cfg(test)]
mod tests {
    use super::Histogram;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let mut h = Histogram::new(&[0.1, 1.0]);
        for v in [0.05, 0.5, 0.5, 7.0, f64::NAN] {
            h.observe(v);
        }
        assert_eq!(h.counts, vec![1, 3]);
        assert_eq!(h.count, 4);
        assert!((h.sum - 8.05).abs() < 1e-9);
    }
}
