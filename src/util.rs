//! Small helpers shared by the I/O modules.

/// Awaits futures concurrently (in place, without spawning). Each future is polled again
/// only when it was woken, so awaiting thousands of calls costs in proportion to their
/// wake-ups, not to the number of futures times the number of wake-ups.
pub async fn join_all<F: std::future::Future>(futs: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    use std::task::{Context, Poll, Wake, Waker};

    /// The indices of the futures woken since the last poll, and the task to wake.
    #[derive(Default)]
    struct Woken {
        queue: Mutex<(Vec<usize>, Option<Waker>)>,
    }
    struct Slot {
        index: usize,
        queued: AtomicBool,
        woken: Arc<Woken>,
    }
    impl Wake for Slot {
        fn wake(self: Arc<Self>) {
            self.wake_by_ref();
        }
        fn wake_by_ref(self: &Arc<Self>) {
            let parent = {
                let mut q = self.woken.queue.lock().unwrap_or_else(|e| e.into_inner());
                if !self.queued.swap(true, Ordering::AcqRel) {
                    q.0.push(self.index);
                }
                q.1.clone()
            };
            if let Some(w) = parent {
                w.wake();
            }
        }
    }

    let mut pinned: Vec<std::pin::Pin<Box<F>>> = futs.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = (0..pinned.len()).map(|_| None).collect();
    let woken = Arc::new(Woken::default());
    let slots: Vec<Arc<Slot>> = (0..pinned.len())
        .map(|index| {
            Arc::new(Slot {
                index,
                queued: AtomicBool::new(true),
                woken: woken.clone(),
            })
        })
        .collect();
    let wakers: Vec<Waker> = slots.iter().map(|s| Waker::from(s.clone())).collect();
    // Every future is polled once at first.
    woken.queue.lock().unwrap_or_else(|e| e.into_inner()).0 = (0..pinned.len()).collect();
    let mut left = pinned.len();
    std::future::poll_fn(|cx| {
        let due = {
            let mut q = woken.queue.lock().unwrap_or_else(|e| e.into_inner());
            if q.1.as_ref().is_none_or(|w| !w.will_wake(cx.waker())) {
                q.1 = Some(cx.waker().clone());
            }
            std::mem::take(&mut q.0)
        };
        for i in due {
            slots[i].queued.store(false, Ordering::Release);
            if out[i].is_some() {
                continue;
            }
            if let Poll::Ready(v) = pinned[i]
                .as_mut()
                .poll(&mut Context::from_waker(&wakers[i]))
            {
                out[i] = Some(v);
                left -= 1;
            }
        }
        if left == 0 {
            Poll::Ready(())
        } else {
            Poll::Pending
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

/// Hands the heap memory freed so far back to the operating system. glibc keeps freed
/// memory resident; after a large config is parsed (the TOML parser's tokens and tables
/// for 10,000 targets peak near 150 MiB, the validated config is a fraction of that) the
/// daemon would otherwise stay at that peak for its whole life. A no-op off glibc.
pub fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn malloc_trim(pad: usize) -> std::ffi::c_int;
        }
        // SAFETY: malloc_trim only returns free pages of glibc's heap to the kernel; it
        // takes no pointer and is thread safe.
        unsafe {
            malloc_trim(0);
        }
    }
}

/// A mailbox for the newest of a stream of values, one per reader: a slow reader skips to
/// the newest (as with a `watch` channel), and a value taken is no longer held by the
/// mailbox, so a large value lives only while its reader uses it. The daemon hands each
/// tick report to its status and metrics tasks this way: a `watch` channel kept the last
/// report (every decision with its text) until the next tick replaced it.
pub fn latest<T>() -> (LatestSender<T>, LatestReceiver<T>) {
    let inner = std::sync::Arc::new(LatestInner {
        slot: std::sync::Mutex::new(None),
        notify: tokio::sync::Notify::new(),
        closed: std::sync::atomic::AtomicBool::new(false),
    });
    (
        LatestSender {
            inner: inner.clone(),
        },
        LatestReceiver { inner },
    )
}

struct LatestInner<T> {
    slot: std::sync::Mutex<Option<T>>,
    notify: tokio::sync::Notify,
    closed: std::sync::atomic::AtomicBool,
}

/// The writing side of [`latest`]; dropping it ends the reader's [`LatestReceiver::recv`]
/// once the last value is taken.
pub struct LatestSender<T> {
    inner: std::sync::Arc<LatestInner<T>>,
}

impl<T> LatestSender<T> {
    /// Puts `value` in the mailbox, replacing (and dropping) one the reader has not taken.
    pub fn send(&self, value: T) {
        let old = self
            .inner
            .slot
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .replace(value);
        drop(old);
        self.inner.notify.notify_one();
    }
}

impl<T> Drop for LatestSender<T> {
    fn drop(&mut self) {
        self.inner
            .closed
            .store(true, std::sync::atomic::Ordering::Release);
        self.inner.notify.notify_one();
    }
}

/// The reading side of [`latest`].
pub struct LatestReceiver<T> {
    inner: std::sync::Arc<LatestInner<T>>,
}

impl<T> LatestReceiver<T> {
    /// Takes the newest value, waiting for one; `None` once the sender is gone and nothing
    /// is left to take.
    pub async fn recv(&mut self) -> Option<T> {
        loop {
            if let Some(v) = self.take() {
                return Some(v);
            }
            if self.inner.closed.load(std::sync::atomic::Ordering::Acquire) {
                // A value sent just before the close is still taken.
                return self.take();
            }
            // A notification sent between the check and here is kept as a permit.
            self.inner.notify.notified().await;
        }
    }

    fn take(&self) -> Option<T> {
        self.inner
            .slot
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }
}

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

    /// Futures that finish one after another at different times: all outputs come back in
    /// order, and each future is polled about as often as it is woken (the fleet-sized joins
    /// of a tick used to poll every pending future at every wake-up).
    #[tokio::test(start_paused = true)]
    async fn joins_in_order_polling_only_woken_futures() {
        use std::future::Future;
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::time::Duration;
        let polls = AtomicUsize::new(0);
        let polls = &polls;
        let n = 2000;
        let futs = (0..n).map(|i| async move {
            let sleep = tokio::time::sleep(Duration::from_millis((i * 7919 % 1000) as u64));
            tokio::pin!(sleep);
            std::future::poll_fn(|cx| {
                polls.fetch_add(1, Ordering::Relaxed);
                sleep.as_mut().poll(cx)
            })
            .await;
            i
        });
        let out = super::join_all(futs).await;
        assert_eq!(out, (0..n).collect::<Vec<_>>());
        let p = polls.load(Ordering::Relaxed);
        assert!(p <= 3 * n, "{p} polls for {n} futures");

        let bounded = super::join_bounded(16, (0..n).map(|i| async move { i * 2 }).collect()).await;
        assert_eq!(bounded, (0..n).map(|i| i * 2).collect::<Vec<_>>());
        assert!(super::join_all(Vec::<std::future::Ready<()>>::new())
            .await
            .is_empty());
    }

    /// The mailbox keeps only the newest value, holds nothing once it is taken (what the
    /// daemon's tick reports rely on to be freed), and ends after the sender is dropped,
    /// still handing over a value sent just before.
    #[tokio::test]
    async fn latest_keeps_only_the_newest_until_taken() {
        use std::sync::Arc;
        let (tx, mut rx) = super::latest::<Arc<u32>>();
        let first = Arc::new(1);
        tx.send(first.clone());
        let second = Arc::new(2);
        tx.send(second.clone());
        // The replaced value is dropped by the mailbox at once.
        assert_eq!(Arc::strong_count(&first), 1);
        let got = rx.recv().await.unwrap();
        assert_eq!(*got, 2);
        drop(got);
        // Taken: only the test's own handle is left.
        assert_eq!(Arc::strong_count(&second), 1);

        // A reader waiting before the value is sent is woken.
        let waiting = tokio::spawn(async move {
            let v = rx.recv().await;
            (v, rx)
        });
        tokio::task::yield_now().await;
        tx.send(Arc::new(3));
        let (v, mut rx) = waiting.await.unwrap();
        assert_eq!(v.as_deref(), Some(&3));

        tx.send(Arc::new(4));
        drop(tx);
        assert_eq!(rx.recv().await.as_deref(), Some(&4));
        assert_eq!(rx.recv().await, None);
    }
}
