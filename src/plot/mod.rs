//! Figures: analytic curves as lines, Monte Carlo as points with error bars, rendered to PNG and SVG with an
//! embedded font (DejaVu Sans via ab_glyph, so no system fonts are needed), and the data written beside
//! them as CSV.

pub mod figures;
pub mod training;

use crate::error::{Error, Result};
use plotters::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::Once;

/// How a series is drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeriesKind {
    /// A closed-form curve.
    Line,
    /// Measurements, with optional symmetric error bars.
    Points,
}

#[derive(Clone, Debug)]
pub struct Series {
    pub name: String,
    pub kind: SeriesKind,
    /// (x, y) in data units (y before any log transform).
    pub points: Vec<(f64, f64)>,
    /// Lower and upper ends of each point's error bar, in data units.
    pub bars: Option<Vec<(f64, f64)>>,
    /// Index into the palette, so a prediction and its measurement share a colour.
    pub color: usize,
    /// Which of the figure's panels it is drawn in (0 unless the figure has several).
    pub panel: usize,
}

impl Series {
    pub fn line(name: impl Into<String>, color: usize, points: Vec<(f64, f64)>) -> Series {
        Series {
            name: name.into(),
            kind: SeriesKind::Line,
            points,
            bars: None,
            color,
            panel: 0,
        }
    }

    pub fn points(
        name: impl Into<String>,
        color: usize,
        points: Vec<(f64, f64)>,
        bars: Vec<(f64, f64)>,
    ) -> Series {
        Series {
            name: name.into(),
            kind: SeriesKind::Points,
            points,
            bars: Some(bars),
            color,
            panel: 0,
        }
    }

    /// The same series, drawn in panel `panel`.
    pub fn in_panel(mut self, panel: usize) -> Series {
        self.panel = panel;
        self
    }
}

/// One figure: everything needed to draw it and to write its data.
#[derive(Clone, Debug)]
pub struct Figure {
    /// File stem: NAME.png, NAME.svg, NAME.csv.
    pub name: String,
    pub title: String,
    /// One line under the plot: configuration and seed.
    pub caption: String,
    pub x_label: String,
    pub y_label: String,
    /// Plot y on a log axis (exponential growth shows as a straight line).
    pub log_y: bool,
    /// Plot x on a log axis (e.g. batch sizes 4..256).
    pub log_x: bool,
    pub series: Vec<Series>,
    /// Titles of side-by-side panels sharing the axis labels, each with its own y range (so curves of very
    /// different scale do not squash each other); empty for a single panel titled `title`.
    pub panels: Vec<String>,
}

const PALETTE: [RGBColor; 12] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
    RGBColor(0, 0, 128),
    RGBColor(128, 0, 0),
];

fn register_fonts() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The embedded font cannot be invalid; if it were, text would be missing, not the figure.
        let _ = plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            dejavu::sans::regular(),
        );
    });
}

/// Greedy word wrap to at most `width` characters per line.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    let mut cur = String::new();
    for word in text.split_whitespace() {
        if !cur.is_empty() && cur.chars().count() + 1 + word.chars().count() > width.max(20) {
            lines.push(std::mem::take(&mut cur));
        }
        if !cur.is_empty() {
            cur.push(' ');
        }
        cur.push_str(word);
    }
    lines.push(cur);
    lines
}

fn plot_err<E: std::fmt::Debug>(path: &Path) -> impl Fn(E) -> Error + '_ {
    move |e| Error::File {
        path: path.display().to_string(),
        message: format!("drawing failed: {e:?}"),
    }
}

impl Figure {
    fn transform_x(&self, x: f64) -> f64 {
        if self.log_x {
            x.log10()
        } else {
            x
        }
    }

    fn transform(&self, y: f64) -> f64 {
        if self.log_y {
            y.log10()
        } else {
            y
        }
    }

    /// Data ranges after the y transform, padded; non-finite values are skipped (never drawn as NaN).
    fn ranges(&self, panel: usize) -> ((f64, f64), (f64, f64)) {
        let (mut x0, mut x1, mut y0, mut y1) = (
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::INFINITY,
            f64::NEG_INFINITY,
        );
        for s in self.series.iter().filter(|s| s.panel == panel) {
            for (i, &(x, y)) in s.points.iter().enumerate() {
                let x = self.transform_x(x);
                let mut ys = vec![self.transform(y)];
                if let Some(b) = &s.bars {
                    ys.push(self.transform(b[i].0));
                    ys.push(self.transform(b[i].1));
                }
                for ty in ys {
                    if x.is_finite() && ty.is_finite() {
                        x0 = x0.min(x);
                        x1 = x1.max(x);
                        y0 = y0.min(ty);
                        y1 = y1.max(ty);
                    }
                }
            }
        }
        if !x0.is_finite() {
            return ((0.0, 1.0), (0.0, 1.0));
        }
        let pad = |a: f64, b: f64| {
            let d = if b > a { (b - a) * 0.05 } else { 0.5 };
            (a - d, b + d)
        };
        (pad(x0, x1), pad(y0, y1))
    }

    fn draw<DB: DrawingBackend>(
        &self,
        root: DrawingArea<DB, plotters::coord::Shift>,
        path: &Path,
    ) -> Result<()>
    where
        DB::ErrorType: 'static,
    {
        let e = plot_err(path);
        root.fill(&WHITE).map_err(&e)?;
        let (w, h) = root.dim_in_pixel();
        // About 7 px per character at 13 px DejaVu Sans.
        let lines = wrap(&self.caption, (w as usize).saturating_sub(20) / 7);
        let (body, foot) = root.split_vertically(h as i32 - 10 - 17 * lines.len() as i32);
        for (i, line) in lines.iter().enumerate() {
            foot.draw(&Text::new(
                line.clone(),
                (10, 5 + 17 * i as i32),
                ("sans-serif", 13).into_font().color(&BLACK.mix(0.8)),
            ))
            .map_err(&e)?;
        }
        if self.panels.is_empty() {
            self.draw_panel(&body, 0, &self.title, path)?;
        } else {
            let (head, rest) = body.split_vertically(34);
            head.draw(&Text::new(
                self.title.clone(),
                (10, 6),
                ("sans-serif", 22).into_font().color(&BLACK),
            ))
            .map_err(&e)?;
            let areas = rest.split_evenly((1, self.panels.len()));
            for (i, (area, title)) in areas.iter().zip(&self.panels).enumerate() {
                self.draw_panel(area, i, title, path)?;
            }
        }
        root.present().map_err(&e)?;
        Ok(())
    }

    fn draw_panel<DB: DrawingBackend>(
        &self,
        body: &DrawingArea<DB, plotters::coord::Shift>,
        panel: usize,
        title: &str,
        path: &Path,
    ) -> Result<()>
    where
        DB::ErrorType: 'static,
    {
        let e = plot_err(path);
        let ((x0, x1), (y0, y1)) = self.ranges(panel);
        let title_size = if self.panels.is_empty() { 22 } else { 17 };
        let mut chart = ChartBuilder::on(body)
            .caption(title, ("sans-serif", title_size))
            .margin(12)
            .x_label_area_size(45)
            .y_label_area_size(70)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(&e)?;
        let log_y = self.log_y;
        let y_fmt = move |v: &f64| {
            if log_y {
                let val = 10f64.powf(*v);
                if (0.01..1000.0).contains(&val) {
                    format!("{val:.3}")
                } else {
                    format!("{val:.1e}")
                }
            } else {
                format!("{v:.3}")
            }
        };
        let x_fmt = |v: &f64| {
            let val = 10f64.powf(*v);
            if (0.01..10000.0).contains(&val) {
                format!("{val:.0}")
            } else {
                format!("{val:.1e}")
            }
        };
        let mut mesh = chart.configure_mesh();
        mesh.x_desc(self.x_label.as_str())
            .y_desc(self.y_label.as_str())
            .y_label_formatter(&y_fmt)
            .label_style(("sans-serif", 14))
            .axis_desc_style(("sans-serif", 16));
        if self.log_x {
            mesh.x_label_formatter(&x_fmt);
        }
        mesh.draw().map_err(&e)?;
        let panel_series: Vec<&Series> = self.series.iter().filter(|s| s.panel == panel).collect();
        for s in &panel_series {
            // Points whose line carries the same name share its legend entry.
            let labelled = s.kind == SeriesKind::Line
                || !panel_series
                    .iter()
                    .any(|t| t.kind == SeriesKind::Line && t.name == s.name);
            let color = PALETTE[s.color % PALETTE.len()];
            let pts: Vec<(f64, f64)> = s
                .points
                .iter()
                .map(|&(x, y)| (self.transform_x(x), self.transform(y)))
                .filter(|(x, y)| x.is_finite() && y.is_finite())
                .collect();
            match s.kind {
                SeriesKind::Line => {
                    chart
                        .draw_series(LineSeries::new(pts, color.stroke_width(2)))
                        .map_err(&e)?
                        .label(s.name.clone())
                        .legend(move |(x, y)| {
                            PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                        });
                }
                SeriesKind::Points => {
                    if let Some(bars) = &s.bars {
                        let bars: Vec<_> = s
                            .points
                            .iter()
                            .zip(bars)
                            .map(|(&(x, y), &(lo, hi))| {
                                (
                                    self.transform_x(x),
                                    self.transform(lo),
                                    self.transform(y),
                                    self.transform(hi),
                                )
                            })
                            .filter(|(x, a, b, c)| {
                                x.is_finite() && a.is_finite() && b.is_finite() && c.is_finite()
                            })
                            .collect();
                        chart
                            .draw_series(bars.into_iter().map(|(x, lo, y, hi)| {
                                ErrorBar::new_vertical(x, lo, y, hi, color.stroke_width(1), 6)
                            }))
                            .map_err(&e)?;
                    }
                    let drawn = chart
                        .draw_series(pts.into_iter().map(|p| Circle::new(p, 3, color.filled())))
                        .map_err(&e)?;
                    if labelled {
                        drawn
                            .label(s.name.clone())
                            .legend(move |(x, y)| Circle::new((x + 10, y), 3, color.filled()));
                    }
                }
            }
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.5))
            .label_font(("sans-serif", 13))
            .position(SeriesLabelPosition::UpperLeft)
            .draw()
            .map_err(&e)?;
        Ok(())
    }

    /// Writes NAME.png, NAME.svg, NAME.csv and NAME.caption.txt into `dir` and returns their paths.
    pub fn render(&self, dir: &Path) -> Result<Vec<PathBuf>> {
        register_fonts();
        std::fs::create_dir_all(dir).map_err(|e| Error::File {
            path: dir.display().to_string(),
            message: e.to_string(),
        })?;
        let png = dir.join(format!("{}.png", self.name));
        let svg = dir.join(format!("{}.svg", self.name));
        let csv = dir.join(format!("{}.csv", self.name));
        let lines = wrap(&self.caption, 1000 / 7).len() as u32;
        let size = (
            1000 + 600 * self.panels.len().saturating_sub(1) as u32,
            650 + 17 * lines,
        );
        // Each picture is written under a temporary name (same extension: the bitmap backend picks the
        // format from it) and renamed into place, so a failed or interrupted run never leaves a partial figure.
        let tmp = |ext: &str| dir.join(format!(".{}.partial.{ext}", self.name));
        let (png_t, svg_t) = (tmp("png"), tmp("svg"));
        self.draw(BitMapBackend::new(&png_t, size).into_drawing_area(), &png)?;
        self.draw(SVGBackend::new(&svg_t, size).into_drawing_area(), &svg)?;
        for (from, to) in [(&png_t, &png), (&svg_t, &svg)] {
            std::fs::rename(from, to).map_err(|e| Error::File {
                path: to.display().to_string(),
                message: e.to_string(),
            })?;
        }
        // The caption lives beside the CSV, so that the CSV is a plain table (`pandas.read_csv(path)`).
        let caption = dir.join(format!("{}.caption.txt", self.name));
        crate::checkpoint::write_atomic(&csv, self.csv().as_bytes())?;
        crate::checkpoint::write_atomic(
            &caption,
            format!("{}\n{}\n", self.title, self.caption).as_bytes(),
        )?;
        Ok(vec![png, svg, csv, caption])
    }

    /// The figure's data: a header line, then one row per point with the series name and kind (empty
    /// fields where a value is undefined). Title and caption are in `NAME.caption.txt`.
    pub fn csv(&self) -> String {
        let mut s = String::from("series,kind,x,y,lo,hi\n");
        for ser in &self.series {
            for (i, &(x, y)) in ser.points.iter().enumerate() {
                let (lo, hi) = ser
                    .bars
                    .as_ref()
                    .map(|b| b[i])
                    .unwrap_or((f64::NAN, f64::NAN));
                let kind = match ser.kind {
                    SeriesKind::Line => "theory",
                    SeriesKind::Points => "monte-carlo",
                };
                let f = |v: f64| {
                    if v.is_finite() {
                        format!("{v}")
                    } else {
                        String::new()
                    }
                };
                s.push_str(&format!(
                    "{},{},{},{},{},{}\n",
                    ser.name.replace(',', ";"),
                    kind,
                    f(x),
                    f(y),
                    f(lo),
                    f(hi)
                ));
            }
        }
        s
    }
}
