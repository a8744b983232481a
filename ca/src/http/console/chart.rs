//! The dashboard's chart of status reports per hour, drawn here as SVG: bars of reports,
//! the failed ones on top in another colour, hour ticks every six hours. Presentation
//! attributes only (no `style`), so the page's Content-Security-Policy holds; the numbers are
//! also in the SVG's title and description for screen readers.

use std::fmt::Write;

use crate::store::ReportHour;

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 180.0;
const LEFT: f64 = 40.0;
const BOTTOM: f64 = 24.0;
const TOP: f64 = 10.0;

/// The chart of `hours` (oldest first) as an SVG element.
pub(super) fn reports_svg(hours: &[ReportHour]) -> String {
    let max = hours.iter().map(|h| h.reports).max().unwrap_or(0).max(1);
    let total: i64 = hours.iter().map(|h| h.reports).sum();
    let failed: i64 = hours.iter().map(|h| h.failures).sum();
    let plot_w = WIDTH - LEFT - 8.0;
    let plot_h = HEIGHT - BOTTOM - TOP;
    let slot = plot_w / hours.len().max(1) as f64;
    let y_of = |value: i64| TOP + plot_h - plot_h * value as f64 / max as f64;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r##"<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-labelledby="chart-title chart-desc"><title id="chart-title">Status reports per hour, last {n} hours</title><desc id="chart-desc">{total} reports, {failed} of them failed checks; at most {max} in one hour.</desc>"##,
        n = hours.len(),
    );
    // Axis and the maximum's gridline.
    let _ = write!(
        svg,
        r##"<line x1="{LEFT}" y1="{base}" x2="{right}" y2="{base}" stroke="#8a8f98" stroke-width="1"/><line x1="{LEFT}" y1="{TOP}" x2="{right}" y2="{TOP}" stroke="#d5d8de" stroke-width="1" stroke-dasharray="3 3"/><text x="{label_x}" y="{top_label}" text-anchor="end" font-size="11" fill="#4a4f57">{max}</text><text x="{label_x}" y="{base}" text-anchor="end" font-size="11" fill="#4a4f57">0</text>"##,
        base = TOP + plot_h,
        right = WIDTH - 8.0,
        label_x = LEFT - 4.0,
        top_label = TOP + 4.0,
    );
    for (i, hour) in hours.iter().enumerate() {
        let x = LEFT + slot * i as f64 + slot * 0.15;
        let w = slot * 0.7;
        let ok = hour.reports - hour.failures;
        if hour.reports > 0 {
            let y_all = y_of(hour.reports);
            let y_ok = y_of(ok.max(0));
            let _ = write!(
                svg,
                r##"<rect x="{x:.1}" y="{y_ok:.1}" width="{w:.1}" height="{h:.1}" fill="#2f6fdb"><title>{when}: {reports} reports, {failures} failed</title></rect>"##,
                h = TOP + plot_h - y_ok,
                when = hour_label(hour.hour),
                reports = hour.reports,
                failures = hour.failures,
            );
            if hour.failures > 0 {
                let _ = write!(
                    svg,
                    r##"<rect x="{x:.1}" y="{y_all:.1}" width="{w:.1}" height="{h:.1}" fill="#c9372c"/>"##,
                    h = y_ok - y_all,
                );
            }
        }
        if i % 6 == 0 {
            let _ = write!(
                svg,
                r##"<text x="{tx:.1}" y="{ty}" text-anchor="middle" font-size="10" fill="#4a4f57">{label}</text>"##,
                tx = x + w / 2.0,
                ty = HEIGHT - 6.0,
                label = hour_of_day(hour.hour),
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

/// `HH:00` of an hour since the epoch (UTC).
fn hour_of_day(hour: i64) -> String {
    format!("{:02}:00", hour.rem_euclid(24))
}

/// The start of an hour since the epoch, for people.
fn hour_label(hour: i64) -> String {
    crate::model::time::format_time(hour * 3600)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chart_draws_one_bar_per_hour_with_reports_and_names_the_totals() {
        let hours: Vec<ReportHour> = (0..48)
            .map(|i| ReportHour {
                hour: 490_000 + i,
                reports: if i % 2 == 0 { i } else { 0 },
                failures: if i == 10 { 3 } else { 0 },
            })
            .collect();
        let svg = reports_svg(&hours);
        assert!(svg.starts_with("<svg"));
        assert!(svg.ends_with("</svg>"));
        // Hours 2, 4, ..., 46 have reports (hour 0 has none); hour 10 has a failed part.
        assert_eq!(svg.matches("fill=\"#2f6fdb\"").count(), 23);
        assert_eq!(svg.matches("fill=\"#c9372c\"").count(), 1);
        assert!(svg.contains("552 reports, 3 of them failed checks; at most 46 in one hour"));
        assert!(
            !svg.contains("style="),
            "presentation attributes only (CSP)"
        );
        let empty = reports_svg(&[]);
        assert!(empty.contains("0 reports"));
    }
}
