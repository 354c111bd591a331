//! The overview's usage chart as inline SVG, drawn on the server.

use model::SnapshotSummary;

use model::human;

const W: f64 = 720.0;
const H: f64 = 200.0;
const LEFT: f64 = 70.0;
const BOTTOM: f64 = 24.0;

/// A step line of the chunk bytes added by the snapshots, summed in time
/// order; empty when there is nothing to draw.
pub fn usage_svg(snaps: &[SnapshotSummary]) -> String {
    let mut points: Vec<(i64, u64)> = snaps.iter().map(|s| (s.id.time, s.stored)).collect();
    if points.is_empty() {
        return String::new();
    }
    points.sort_unstable();
    let mut total = 0u64;
    let series: Vec<(i64, u64)> = points
        .into_iter()
        .map(|(t, b)| {
            total += b;
            (t, total)
        })
        .collect();
    let (t0, t1) = (series[0].0, series[series.len() - 1].0.max(series[0].0 + 1));
    let top = total.max(1) as f64;
    let x = |t: i64| LEFT + (t - t0) as f64 / (t1 - t0) as f64 * (W - LEFT - 10.0);
    let y = |b: u64| (H - BOTTOM) - b as f64 / top * (H - BOTTOM - 10.0);
    // One step per pixel column at most: the path stays small whatever
    // the number of snapshots.
    let mut path = format!("M{:.1},{:.1}", x(t0), y(0));
    let mut last_x = f64::NEG_INFINITY;
    for (i, (t, b)) in series.iter().enumerate() {
        let next_same_column = series.get(i + 1).is_some_and(|(n, _)| x(*n) - x(*t) < 1.0);
        if x(*t) - last_x < 1.0 && next_same_column {
            continue;
        }
        path.push_str(&format!(" H{:.1} V{:.1}", x(*t), y(*b)));
        last_x = x(*t);
    }
    path.push_str(&format!(" H{:.1}", x(t1)));
    let area = format!("{path} V{:.1} Z", y(0));
    let date = |t: i64| model::time::format_rfc3339(t).get(..10).unwrap_or_default().to_owned();
    format!(
        concat!(
            r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" role="img" aria-label="stored bytes over time">"#,
            r##"<line x1="{l}" y1="{base:.1}" x2="{w}" y2="{base:.1}" stroke="#c5ced8"/>"##,
            r##"<line x1="{l}" y1="10" x2="{w}" y2="10" stroke="#eef1f4"/>"##,
            r##"<path d="{area}" fill="#2f5f8a" fill-opacity="0.12"/>"##,
            r##"<path d="{path}" fill="none" stroke="#2f5f8a" stroke-width="2"/>"##,
            r##"<text x="{tl}" y="14" font-size="11" text-anchor="end" fill="#5f6b7a">{max}</text>"##,
            r##"<text x="{tl}" y="{base:.1}" font-size="11" text-anchor="end" fill="#5f6b7a">0</text>"##,
            r##"<text x="{l}" y="{h}" font-size="11" fill="#5f6b7a">{from}</text>"##,
            r##"<text x="{w}" y="{h}" font-size="11" text-anchor="end" fill="#5f6b7a">{to}</text>"##,
            "</svg>"
        ),
        w = W,
        h = H,
        l = LEFT,
        tl = LEFT - 6.0,
        base = H - BOTTOM,
        area = area,
        path = path,
        max = human::size(total),
        from = date(t0),
        to = date(t1),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::{BackupGroup, Namespace};

    #[test]
    fn the_chart_climbs_with_each_snapshot() {
        assert!(usage_svg(&[]).is_empty());
        let g = BackupGroup::new(Namespace::root(), "host", "a").unwrap();
        let snap = |t: i64, stored: u64| SnapshotSummary {
            id: g.at(t),
            size: stored,
            stored,
            verify: model::VerifyState::None,
        };
        let svg = usage_svg(&[snap(1_700_000_000, 1 << 20), snap(1_700_086_400, 1 << 20)]);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(svg.contains("2.0 MiB"), "{svg}");
        assert!(svg.contains("2023-11-14") && svg.contains("2023-11-15"), "{svg}");
        let many: Vec<_> = (0..10_000).map(|i| snap(1_700_000_000 + i * 3600, 1000)).collect();
        let svg = usage_svg(&many);
        assert!(svg.len() < 40_000, "{} bytes for 10,000 snapshots", svg.len());
        assert!(svg.contains("9.5 MiB"), "the total is still the sum");
    }
}
