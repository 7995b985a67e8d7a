//! The latency percentile curve as a small SVG: x is the percentile on a log scale of
//! `1 / (1 − p)` (so 90 %, 99 %, 99.9 % … are evenly spaced), y is the latency in µs.

use std::fmt::Write as _;

use hdrhistogram::Histogram;

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 420.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 45.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 50.0;
const COLOURS: [&str; 3] = ["#1f77b4", "#d62728", "#2ca02c"];

/// One curve: its label and its latency histogram in ns.
#[derive(Debug)]
pub struct Curve<'a> {
    /// Shown in the legend.
    pub label: &'a str,
    /// Latencies in ns.
    pub histogram: &'a Histogram<u64>,
}

/// Points (x = log10(1/(1-p)), y = µs) of a histogram's percentile curve up to `x_max`.
fn points(h: &Histogram<u64>, x_max: f64) -> Vec<(f64, f64)> {
    if h.is_empty() {
        return Vec::new();
    }
    let steps = (x_max * 50.0) as usize;
    let mut out: Vec<(f64, f64)> = (0..=steps)
        .map(|i| {
            let x = i as f64 / 50.0;
            let p = 1.0 - 10f64.powf(-x);
            (x, h.value_at_quantile(p) as f64 / 1000.0)
        })
        .collect();
    out.push((x_max, h.max() as f64 / 1000.0));
    out
}

/// A round axis maximum at or above `v`: 1, 2 or 5 times a power of ten.
fn nice_ceiling(v: f64) -> f64 {
    if v <= 0.0 {
        return 1.0;
    }
    let mag = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * mag)
        .find(|&c| c >= v)
        .unwrap_or(10.0 * mag)
}

fn percentile_label(x: u32) -> String {
    match x {
        0 => "0%".to_owned(),
        n => {
            let nines = "9".repeat(n as usize);
            match nines.len() {
                1 => "90%".to_owned(),
                2 => "99%".to_owned(),
                k => format!("99.{}%", &nines[..k - 2]),
            }
        }
    }
}

/// The SVG document for `curves` under `title`.
pub fn svg(title: &str, curves: &[Curve<'_>]) -> String {
    let count = curves.iter().map(|c| c.histogram.len()).max().unwrap_or(0);
    // Enough nines to reach the rarest sample, between 3 and 6.
    let x_max = ((count.max(1) as f64).log10().ceil()).clamp(3.0, 6.0);
    let series: Vec<Vec<(f64, f64)>> = curves.iter().map(|c| points(c.histogram, x_max)).collect();
    let y_top = nice_ceiling(series.iter().flatten().map(|&(_, y)| y).fold(0.0, f64::max));
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let sx = |x: f64| LEFT + x / x_max * plot_w;
    let sy = |y: f64| TOP + plot_h - y / y_top * plot_h;

    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="14">{}</text>"#,
        WIDTH / 2.0,
        escape(title)
    );
    for i in 0..=(x_max as u32) {
        let x = sx(f64::from(i));
        let _ = writeln!(
            s,
            r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{:.1}" stroke="#ddd"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            TOP + plot_h,
            TOP + plot_h + 18.0,
            percentile_label(i)
        );
    }
    for i in 0..=5 {
        let v = y_top * f64::from(i) / 5.0;
        let y = sy(v);
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT + plot_w,
            LEFT - 6.0,
            y + 4.0,
            trim(v)
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">percentile</text>"#,
        LEFT + plot_w / 2.0,
        HEIGHT - 10.0
    );
    let _ = writeln!(
        s,
        r#"<text x="16" y="{}" text-anchor="middle" transform="rotate(-90 16 {})">latency (µs)</text>"#,
        TOP + plot_h / 2.0,
        TOP + plot_h / 2.0
    );
    for (i, (curve, pts)) in curves.iter().zip(&series).enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let path: Vec<String> = pts
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y)))
            .collect();
        let _ = writeln!(
            s,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{}"/>"#,
            path.join(" ")
        );
        let ly = TOP + 16.0 + 18.0 * i as f64;
        let _ = writeln!(
            s,
            r#"<line x1="{:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{colour}" stroke-width="2"/><text x="{:.1}" y="{:.1}">{}</text>"#,
            LEFT + 12.0,
            LEFT + 36.0,
            LEFT + 42.0,
            ly + 4.0,
            escape(curve.label)
        );
    }
    s.push_str("</svg>\n");
    s
}

fn trim(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::tally::new_histogram;

    #[test]
    fn curve_rises_with_the_percentile_and_fits_the_axes() {
        let mut h = new_histogram();
        for i in 1..=10_000u64 {
            h.record(i * 100).expect("record");
        }
        let pts = points(&h, 4.0);
        assert!(pts.windows(2).all(|w| w[1].1 >= w[0].1), "monotonic");
        assert!((pts.last().expect("points").1 - 1000.0).abs() < 2.0);
        let doc = svg(
            "ws <test>",
            &[Curve {
                label: "relay",
                histogram: &h,
            }],
        );
        assert!(doc.starts_with("<svg") && doc.trim_end().ends_with("</svg>"));
        assert!(doc.contains("99.99%") && doc.contains("ws &lt;test&gt;"));
        assert_eq!(doc.matches("<polyline").count(), 1);
    }

    #[test]
    fn axis_maxima_are_round() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(130.0), 200.0);
        assert_eq!(nice_ceiling(480.0), 500.0);
        assert_eq!(nice_ceiling(1000.0), 1000.0);
        assert_eq!(percentile_label(0), "0%");
        assert_eq!(percentile_label(3), "99.9%");
    }
}
