//! Bar charts drawn on the server as SVG: bars scaled to the largest value, a few axis
//! labels, a title on every bar (what a tooltip shows).

pub struct Bar {
    pub x: i64,
    pub y: i64,
    pub w: i64,
    pub h: i64,
    pub title: String,
}

pub struct Tick {
    pub x: i64,
    pub label: String,
}

pub struct BarChart {
    pub label: String,
    pub width: i64,
    pub height: i64,
    pub bars: Vec<Bar>,
    pub ticks: Vec<Tick>,
    /// The largest value, as the top of the scale reads.
    pub max: String,
    pub empty: bool,
}

const WIDTH: i64 = 640;
const HEIGHT: i64 = 160;
const AXIS: i64 = 18;

/// A chart of `points` (label, value) with `unit` in each bar's title; every
/// `points.len() / 6`th label is printed under the axis.
pub fn bars(label: &str, points: &[(String, f64)], unit: &str) -> BarChart {
    let max = points.iter().map(|(_, v)| *v).fold(0.0_f64, f64::max);
    let n = points.len().max(1) as i64;
    let slot = (WIDTH / n).max(2);
    let every = (points.len() / 6).max(1);
    let plot = (HEIGHT - AXIS) as f64;
    let mut chart = BarChart {
        label: label.to_owned(),
        width: slot * n,
        height: HEIGHT,
        bars: Vec::with_capacity(points.len()),
        ticks: Vec::new(),
        max: format_value(max),
        empty: max <= 0.0,
    };
    for (i, (name, value)) in points.iter().enumerate() {
        let h = if max > 0.0 { ((value / max) * plot).round() as i64 } else { 0 };
        let x = i as i64 * slot;
        chart.bars.push(Bar {
            x: x + 1,
            y: HEIGHT - AXIS - h,
            w: (slot - 2).max(1),
            h,
            title: format!("{name}: {} {unit}", format_value(*value)),
        });
        if i % every == 0 {
            chart.ticks.push(Tick { x, label: name.clone() });
        }
    }
    chart
}

/// 1234567 → "1.2M", 12345 → "12.3k", 12.5 → "12.5".
pub fn format_value(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if v >= 1e4 {
        format!("{:.1}k", v / 1e3)
    } else if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_scale_to_the_largest_value() {
        let points: Vec<(String, f64)> = [("a", 0.0), ("b", 5.0), ("c", 10.0)]
            .iter()
            .map(|(l, v)| (l.to_string(), *v))
            .collect();
        let c = bars("x", &points, "beads");
        assert_eq!(c.bars.len(), 3);
        assert_eq!(c.bars[0].h, 0);
        assert_eq!(c.bars[2].h, HEIGHT - AXIS);
        assert_eq!(c.bars[1].h, (HEIGHT - AXIS) / 2);
        assert_eq!(c.bars[2].y, 0);
        assert_eq!(c.bars[1].title, "b: 5 beads");
        assert!(!c.empty);
    }

    #[test]
    fn an_all_zero_chart_says_it_is_empty() {
        let c = bars("x", &[("a".into(), 0.0)], "");
        assert!(c.empty);
        assert_eq!(c.bars[0].h, 0);
    }

    #[test]
    fn values_read_short() {
        assert_eq!(format_value(1_234_567.0), "1.2M");
        assert_eq!(format_value(12_345.0), "12.3k");
        assert_eq!(format_value(42.0), "42");
        assert_eq!(format_value(2.25), "2.2");
    }
}
