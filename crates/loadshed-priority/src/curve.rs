//! The graduated shedding curve and its random source.

use palisade_core::Priority;

/// The probability of shedding a request of `priority` at overload `level`.
///
/// The band `[threshold, ceiling]` is split in three equal parts; the shed probability of
/// `Sheddable` rises linearly from `start` (at the threshold) to 1 across the first,
/// `SheddablePlus` from 0 to 1 across the second, `Critical` from 0 to 1 across the last. Below
/// its part a class is never shed, above it always; `CriticalPlus` is never shed. The higher
/// classes start from 0, not `start`: the level settles where the class below is being shed,
/// which is exactly where the next class's part begins, and a step there would shed the higher
/// class at that resting point.
///
/// This is the curve alone: the layer applies it to `Critical` only once the level has stayed
/// in `Critical`'s part for `critical_sustain` (see
/// [`LoadShedConfig`](crate::LoadShedConfig)).
///
/// ```
/// use palisade_core::Priority;
/// use palisade_loadshed_priority::shed_probability;
///
/// // Defaults: threshold 0.5, ceiling 0.8, start 0.1.
/// let p = |class, level| shed_probability(class, level, 0.5, 0.8, 0.1);
/// assert_eq!(p(Priority::Sheddable, 0.4), 0.0);
/// assert!((p(Priority::Sheddable, 0.5) - 0.1).abs() < 1e-9);
/// assert_eq!(p(Priority::Sheddable, 0.65), 1.0);
/// assert_eq!(p(Priority::Critical, 0.65), 0.0);
/// assert_eq!(p(Priority::SheddablePlus, 0.6), 0.0); // a continuous handover
/// assert!((p(Priority::SheddablePlus, 0.65) - 0.5).abs() < 1e-9);
/// assert_eq!(p(Priority::CriticalPlus, 1.0), 0.0);
/// ```
pub fn shed_probability(
    priority: Priority,
    level: f64,
    threshold: f64,
    ceiling: f64,
    start: f64,
) -> f64 {
    let Some((low, width)) = part(priority, threshold, ceiling) else {
        return 0.0;
    };
    let start = if priority == Priority::Sheddable {
        start
    } else {
        0.0
    };
    if level.is_nan() || level < low {
        0.0
    } else if level >= low + width {
        1.0
    } else {
        start + (1.0 - start) * (level - low) / width
    }
}

/// Where `priority`'s part of the band `[threshold, ceiling]` starts, and its width; `None` for
/// `CriticalPlus`, which has no part.
pub(crate) fn part(priority: Priority, threshold: f64, ceiling: f64) -> Option<(f64, f64)> {
    let step = match priority {
        Priority::Sheddable => 0.0,
        Priority::SheddablePlus => 1.0,
        Priority::Critical => 2.0,
        Priority::CriticalPlus => return None,
    };
    let width = (ceiling - threshold) / 3.0;
    Some((threshold + step * width, width))
}

/// Where the shedding dice come from; injectable so tests are deterministic.
pub trait RandomSource: Send + Sync + 'static {
    /// A number in `[0, 1)`.
    fn next_unit(&self) -> f64;
}

/// A fast thread-local generator (the default).
#[derive(Debug, Clone, Copy, Default)]
pub struct FastRandom;

impl RandomSource for FastRandom {
    fn next_unit(&self) -> f64 {
        fastrand::f64()
    }
}

#[cfg(test)]
// Outside its ramp the curve returns the exact constants 0 and 1.
#[allow(clippy::float_cmp)]
mod tests {
    use super::*;

    const CLASSES: [Priority; 3] = [
        Priority::Sheddable,
        Priority::SheddablePlus,
        Priority::Critical,
    ];

    #[test]
    fn classes_are_shed_in_order() {
        for level in (0..=100).map(|i| f64::from(i) / 100.0) {
            let p: Vec<f64> = CLASSES
                .iter()
                .map(|c| shed_probability(*c, level, 0.5, 0.8, 0.1))
                .collect();
            assert!(p[0] >= p[1] && p[1] >= p[2], "level {level}: {p:?}");
            assert!(p.iter().all(|x| (0.0..=1.0).contains(x)));
            assert_eq!(
                shed_probability(Priority::CriticalPlus, level, 0.5, 0.8, 0.1),
                0.0
            );
        }
    }

    #[test]
    fn each_class_ramps_within_its_third() {
        let p = |c, l| shed_probability(c, l, 0.5, 0.8, 0.1);
        assert_eq!(p(Priority::Sheddable, 0.49), 0.0);
        assert!((p(Priority::Sheddable, 0.55) - 0.55).abs() < 1e-9);
        assert_eq!(p(Priority::Sheddable, 0.6), 1.0);
        assert_eq!(p(Priority::SheddablePlus, 0.59), 0.0);
        assert_eq!(
            p(Priority::SheddablePlus, 0.6),
            0.0,
            "starts from zero where sheddable is all shed"
        );
        assert!((p(Priority::SheddablePlus, 0.65) - 0.5).abs() < 1e-9);
        assert_eq!(p(Priority::SheddablePlus, 0.7), 1.0);
        assert_eq!(p(Priority::Critical, 0.7), 0.0);
        assert_eq!(p(Priority::Critical, 0.69), 0.0);
        assert_eq!(p(Priority::Critical, 0.8), 1.0);
        assert_eq!(p(Priority::Critical, f64::NAN), 0.0);
    }
}
