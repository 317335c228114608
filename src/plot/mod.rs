//! Figures: analytic curves as lines, Monte Carlo as points with error bars, rendered to PNG and SVG with an
//! embedded font (DejaVu Sans via ab_glyph, so no system fonts are needed), and the data written beside
//! them as CSV.

pub mod figures;

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
}

impl Series {
    pub fn line(name: impl Into<String>, color: usize, points: Vec<(f64, f64)>) -> Series {
        Series {
            name: name.into(),
            kind: SeriesKind::Line,
            points,
            bars: None,
            color,
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
        }
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
    fn ranges(&self) -> ((f64, f64), (f64, f64)) {
        let (mut x0, mut x1, mut y0, mut y1) = (
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::INFINITY,
            f64::NEG_INFINITY,
        );
        for s in &self.series {
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
        let (body, foot) = root.split_vertically(root.dim_in_pixel().1 as i32 - 30);
        foot.draw(&Text::new(
            self.caption.clone(),
            (10, 8),
            ("sans-serif", 13).into_font().color(&BLACK.mix(0.8)),
        ))
        .map_err(&e)?;
        let ((x0, x1), (y0, y1)) = self.ranges();
        let mut chart = ChartBuilder::on(&body)
            .caption(&self.title, ("sans-serif", 22))
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
        for s in &self.series {
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
                    chart
                        .draw_series(pts.into_iter().map(|p| Circle::new(p, 3, color.filled())))
                        .map_err(&e)?
                        .label(s.name.clone())
                        .legend(move |(x, y)| Circle::new((x + 10, y), 3, color.filled()));
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
        root.present().map_err(&e)?;
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
        let size = (1000, 680);
        self.draw(BitMapBackend::new(&png, size).into_drawing_area(), &png)?;
        self.draw(SVGBackend::new(&svg, size).into_drawing_area(), &svg)?;
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
