//! What a window computes: the built-in aggregates and user-defined ones, over a small
//! accumulator of numbers per window (what the state holds and the changelog stores).

use std::fmt;
use std::sync::Arc;

/// The most numbers an accumulator holds.
pub const MAX_WIDTH: usize = 3;

/// A window's running aggregate: its first [`Aggregate::width`] numbers are used.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(crate) struct Acc(pub(crate) [f64; MAX_WIDTH]);

/// A user-defined aggregate (Kafka Streams' `aggregate` with an initializer, an adder and a
/// merger), over an accumulator of up to [`MAX_WIDTH`] numbers per window: an average keeps a
/// sum and a count, a variance a count, a sum and a sum of squares.
///
/// A window's records are aggregated per batch first, then merged into the window's state, and
/// merging sessions merges their accumulators: `merge` must be associative and commutative, so
/// the result does not depend on how the input was split into batches.
///
/// ```
/// use spate::pipeline::window::{Aggregate, UserAggregate};
///
/// /// The spread of the values: largest minus smallest.
/// struct Range;
///
/// impl UserAggregate for Range {
///     fn name(&self) -> &str { "range" }
///     fn width(&self) -> usize { 2 }
///     fn init(&self, value: f64, acc: &mut [f64]) { acc.copy_from_slice(&[value, value]) }
///     fn merge(&self, acc: &mut [f64], other: &[f64]) {
///         acc[0] = acc[0].min(other[0]);
///         acc[1] = acc[1].max(other[1]);
///     }
///     fn result(&self, acc: &[f64]) -> f64 { acc[1] - acc[0] }
/// }
///
/// let range = Aggregate::user(Range);
/// assert_eq!(range.width(), 2);
/// ```
pub trait UserAggregate: Send + Sync {
    /// A short name, for logs and errors.
    fn name(&self) -> &str;
    /// How many numbers the accumulator holds, 1 to [`MAX_WIDTH`] (default 1).
    fn width(&self) -> usize {
        1
    }
    /// One record's value as an accumulator (`acc` has `width` numbers, zeroed).
    fn init(&self, value: f64, acc: &mut [f64]);
    /// Merges `other` into `acc` (both `width` numbers).
    fn merge(&self, acc: &mut [f64], other: &[f64]);
    /// The window's result, from its accumulator.
    fn result(&self, acc: &[f64]) -> f64;
}

/// What a window computes.
#[derive(Clone)]
pub enum Aggregate {
    /// Records in the window.
    Count,
    /// Sum of the values.
    Sum,
    /// Smallest value.
    Min,
    /// Largest value.
    Max,
    /// Mean of the values (a sum and a count per window).
    Avg,
    /// A user-defined aggregate ([`Aggregate::user`]).
    User(Arc<dyn UserAggregate>),
}

impl Aggregate {
    /// A user-defined aggregate.
    ///
    /// # Panics
    /// If its width is not 1 to [`MAX_WIDTH`].
    pub fn user(aggregate: impl UserAggregate + 'static) -> Self {
        let width = aggregate.width();
        assert!(
            (1..=MAX_WIDTH).contains(&width),
            "aggregate {}: width {width}, not 1 to {MAX_WIDTH}",
            aggregate.name()
        );
        Aggregate::User(Arc::new(aggregate))
    }

    /// How many numbers its accumulator holds (the changelog stores as many per window).
    pub fn width(&self) -> usize {
        match self {
            Aggregate::Avg => 2,
            Aggregate::User(u) => u.width(),
            _ => 1,
        }
    }

    /// Whether it reads a value (all but count).
    pub fn reads_a_value(&self) -> bool {
        !matches!(self, Aggregate::Count)
    }

    pub(crate) fn init(&self, v: f64) -> Acc {
        let mut acc = Acc::default();
        match self {
            Aggregate::Count => acc.0[0] = 1.0,
            Aggregate::Avg => acc.0[..2].copy_from_slice(&[v, 1.0]),
            Aggregate::User(u) => u.init(v, &mut acc.0[..u.width()]),
            Aggregate::Sum | Aggregate::Min | Aggregate::Max => acc.0[0] = v,
        }
        acc
    }

    /// Merges `b` into `a`.
    pub(crate) fn merge(&self, a: &mut Acc, b: &Acc) {
        match self {
            Aggregate::Count | Aggregate::Sum => a.0[0] += b.0[0],
            Aggregate::Min => a.0[0] = a.0[0].min(b.0[0]),
            Aggregate::Max => a.0[0] = a.0[0].max(b.0[0]),
            Aggregate::Avg => {
                a.0[0] += b.0[0];
                a.0[1] += b.0[1];
            }
            Aggregate::User(u) => {
                let w = u.width();
                u.merge(&mut a.0[..w], &b.0[..w]);
            }
        }
    }

    pub(crate) fn result(&self, a: &Acc) -> f64 {
        match self {
            Aggregate::Avg => a.0[0] / a.0[1],
            Aggregate::User(u) => u.result(&a.0[..u.width()]),
            _ => a.0[0],
        }
    }
}

impl fmt::Debug for Aggregate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Aggregate::Count => f.write_str("Count"),
            Aggregate::Sum => f.write_str("Sum"),
            Aggregate::Min => f.write_str("Min"),
            Aggregate::Max => f.write_str("Max"),
            Aggregate::Avg => f.write_str("Avg"),
            Aggregate::User(u) => write!(f, "User({})", u.name()),
        }
    }
}

/// User aggregates are equal when they are the same one.
impl PartialEq for Aggregate {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Aggregate::User(a), Aggregate::User(b)) => Arc::ptr_eq(a, b),
            (a, b) => std::mem::discriminant(a) == std::mem::discriminant(b),
        }
    }
}

impl Eq for Aggregate {}

#[cfg(test)]
mod tests {
    use super::*;

    /// An average as a user aggregate, as a user would write it.
    struct Mean;

    impl UserAggregate for Mean {
        fn name(&self) -> &str {
            "mean"
        }
        fn width(&self) -> usize {
            2
        }
        fn init(&self, value: f64, acc: &mut [f64]) {
            acc.copy_from_slice(&[value, 1.0]);
        }
        fn merge(&self, acc: &mut [f64], other: &[f64]) {
            acc[0] += other[0];
            acc[1] += other[1];
        }
        fn result(&self, acc: &[f64]) -> f64 {
            acc[0] / acc[1]
        }
    }

    #[test]
    fn built_ins_and_a_user_aggregate_fold_alike() {
        let values = [3.0, -1.0, 7.5, 2.0];
        let fold = |agg: &Aggregate| {
            let mut acc = agg.init(values[0]);
            for v in &values[1..] {
                agg.merge(&mut acc, &agg.init(*v));
            }
            agg.result(&acc)
        };
        assert_eq!(fold(&Aggregate::Count), 4.0);
        assert_eq!(fold(&Aggregate::Sum), 11.5);
        assert_eq!(fold(&Aggregate::Min), -1.0);
        assert_eq!(fold(&Aggregate::Max), 7.5);
        assert_eq!(fold(&Aggregate::Avg), 11.5 / 4.0);
        assert_eq!(fold(&Aggregate::user(Mean)), fold(&Aggregate::Avg));
        let mean = Aggregate::user(Mean);
        assert_eq!(mean, mean.clone());
        assert_ne!(mean, Aggregate::user(Mean), "another instance");
        assert_eq!(format!("{mean:?}"), "User(mean)");
    }

    #[test]
    #[should_panic(expected = "width 4")]
    fn a_user_aggregate_wider_than_the_accumulator_is_refused() {
        struct Wide;
        impl UserAggregate for Wide {
            fn name(&self) -> &str {
                "wide"
            }
            fn width(&self) -> usize {
                4
            }
            fn init(&self, _: f64, _: &mut [f64]) {}
            fn merge(&self, _: &mut [f64], _: &[f64]) {}
            fn result(&self, _: &[f64]) -> f64 {
                0.0
            }
        }
        let _ = Aggregate::user(Wide);
    }
}
