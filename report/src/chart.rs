//! A horizontal bar chart as a PNG, drawn pixel by pixel with an embedded 8×8 bitmap font:
//! no system fonts, no rendering stack.

use font8x8::UnicodeFonts;

const SCALE: usize = 2;
const GLYPH: usize = 8 * SCALE;
const ROW: usize = 30;
const WIDTH: usize = 960;
const LABEL_CHARS: usize = 24;
const LEFT: usize = 16 + LABEL_CHARS * GLYPH + 8;
const VALUE_CHARS: usize = 14;
const RIGHT: usize = 16 + VALUE_CHARS * GLYPH;
const TOP: usize = 48;

struct Canvas {
    w: usize,
    h: usize,
    px: Vec<u8>,
}

impl Canvas {
    fn new(w: usize, h: usize) -> Canvas {
        Canvas {
            w,
            h,
            px: vec![255; w * h * 3],
        }
    }

    fn rect(&mut self, x: usize, y: usize, w: usize, h: usize, rgb: [u8; 3]) {
        for yy in y..(y + h).min(self.h) {
            for xx in x..(x + w).min(self.w) {
                let i = (yy * self.w + xx) * 3;
                self.px[i..i + 3].copy_from_slice(&rgb);
            }
        }
    }

    fn text(&mut self, x: usize, y: usize, s: &str, rgb: [u8; 3]) {
        for (n, ch) in s.chars().enumerate() {
            let glyph = font8x8::BASIC_FONTS
                .get(ch)
                .or_else(|| font8x8::BASIC_FONTS.get('?'))
                .unwrap_or([0; 8]);
            for (row, bits) in glyph.iter().enumerate() {
                for col in 0..8 {
                    if bits & (1 << col) != 0 {
                        self.rect(
                            x + n * GLYPH + col * SCALE,
                            y + row * SCALE,
                            SCALE,
                            SCALE,
                            rgb,
                        );
                    }
                }
            }
        }
    }
}

fn fit(s: &str, n: usize) -> String {
    let ascii: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect();
    if ascii.chars().count() <= n {
        ascii
    } else {
        format!("{}~", ascii.chars().take(n - 1).collect::<String>())
    }
}

fn label_value(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else if x.abs() >= 1e6 || x.abs() < 1e-3 {
        format!("{x:.3e}")
    } else {
        format!("{x:.3}")
    }
}

/// A bar chart of `bars` (label, value) titled `title`. Negative values draw as zero-width.
pub fn bar_chart_png(title: &str, bars: &[(String, f64)]) -> Vec<u8> {
    let height = TOP + bars.len().max(1) * ROW + 24;
    let mut c = Canvas::new(WIDTH, height);
    c.text(16, 14, &fit(title, (WIDTH - 32) / GLYPH), [20, 20, 20]);
    let max = bars.iter().map(|(_, v)| *v).fold(0.0f64, f64::max);
    let span = WIDTH - LEFT - RIGHT;
    for (i, (label, v)) in bars.iter().enumerate() {
        let y = TOP + i * ROW;
        c.text(
            16,
            y + (ROW - GLYPH) / 2,
            &fit(label, LABEL_CHARS),
            [40, 40, 40],
        );
        let w = if max > 0.0 && *v > 0.0 {
            ((v / max) * span as f64).round() as usize
        } else {
            0
        };
        c.rect(LEFT, y + 4, w.max(1), ROW - 8, [46, 110, 190]);
        c.text(
            LEFT + w + 8,
            y + (ROW - GLYPH) / 2,
            &fit(&label_value(*v), VALUE_CHARS),
            [20, 20, 20],
        );
    }
    // Axis line.
    c.rect(
        LEFT - 1,
        TOP - 4,
        1,
        bars.len().max(1) * ROW + 4,
        [120, 120, 120],
    );
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, WIDTH as u32, height as u32);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        // Writing to a Vec cannot fail for I/O reasons; a failure here would be a bug.
        if let Ok(mut w) = enc.write_header() {
            let _ = w.write_image_data(&c.px);
        }
    }
    out
}
