//! A QR code in the terminal: two modules per character cell with Unicode half blocks,
//! a quiet zone of four modules, and explicit colours on a terminal so that it scans on
//! a dark theme as on a light one.

use anyhow::{Result, bail};
use qrcode::{Color, EcLevel, QrCode, Version, types::QrError};

/// Modules of light margin around the symbol (ISO/IEC 18004 asks for four).
pub const QUIET_ZONE: usize = 4;

/// Black on white, set explicitly: a terminal's own colours may be light on dark. The
/// eight basic colours are understood everywhere, the Linux console included.
const COLORS_ON: &str = "\x1b[30;47m";
const COLORS_OFF: &str = "\x1b[0m";

/// Whether to draw with explicit colours: stdout is a terminal, not a dumb one, and
/// NO_COLOR is unset (then the code is drawn for a light background).
pub fn colors_wanted() -> bool {
    std::io::IsTerminal::is_terminal(&std::io::stdout())
        && std::env::var_os("TERM").is_none_or(|t| t != "dumb")
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// A rendered QR code and what it is.
#[derive(Debug)]
pub struct TerminalQr {
    /// The lines to print, each ending in `\n`.
    pub text: String,
    /// The QR version (1 to 40).
    pub version: i16,
    /// "M" or "L".
    pub level: &'static str,
    /// Modules per side, without the quiet zone.
    pub modules: usize,
    /// Character cells per line (quiet zone included).
    pub columns: usize,
    /// Lines.
    pub lines: usize,
}

/// Encodes `data` at error correction M, or L when M cannot hold it, and draws it.
/// `colors`: wrap each line in explicit black-on-white (for a terminal); without them the
/// dark modules are the glyphs, which reads right on a light background.
///
/// # Errors
/// When `data` does not fit one QR code (version 40 at level L), saying by how much.
pub fn render(data: &str, colors: bool) -> Result<TerminalQr> {
    let mut fitted = None;
    for (level, name) in [(EcLevel::M, "M"), (EcLevel::L, "L")] {
        match QrCode::with_error_correction_level(data.as_bytes(), level) {
            Ok(code) => {
                fitted = Some((code, name));
                break;
            }
            Err(QrError::DataTooLong) => continue,
            Err(e) => bail!("cannot encode a QR code: {e}"),
        }
    }
    let Some((code, level)) = fitted else {
        bail!(
            "the bundle URI is {} characters: too long for one QR code (version 40 at error \
             correction L holds about 4000 characters of its alphabet); move it with --uri as \
             text, or move the bundle directory",
            data.len()
        );
    };
    let version = match code.version() {
        Version::Normal(v) => v,
        Version::Micro(v) => v,
    };
    let modules = code.width();
    let colors_of = code.to_colors();
    let side = modules + 2 * QUIET_ZONE;
    let dark = |x: usize, y: usize| -> bool {
        let (Some(mx), Some(my)) = (x.checked_sub(QUIET_ZONE), y.checked_sub(QUIET_ZONE)) else {
            return false;
        };
        mx < modules && my < modules && colors_of.get(my * modules + mx) == Some(&Color::Dark)
    };
    let mut text = String::with_capacity((side * 3 + 16) * side.div_ceil(2));
    let mut lines = 0;
    for y in (0..side).step_by(2) {
        if colors {
            text.push_str(COLORS_ON);
        }
        for x in 0..side {
            text.push(match (dark(x, y), dark(x, y + 1)) {
                (true, true) => '█',
                (true, false) => '▀',
                (false, true) => '▄',
                (false, false) => ' ',
            });
        }
        if colors {
            text.push_str(COLORS_OFF);
        }
        text.push('\n');
        lines += 1;
    }
    Ok(TerminalQr {
        text,
        version,
        level,
        modules,
        columns: side,
        lines,
    })
}

/// The modules drawn by [`render`] (escape sequences skipped), row by row, quiet zone
/// included: `true` for dark. For tests that read a printed code back.
#[cfg(test)]
pub fn modules_of(text: &str) -> Vec<Vec<bool>> {
    let mut rows = Vec::new();
    for line in text.lines() {
        let mut top = Vec::new();
        let mut bottom = Vec::new();
        let mut chars = line.chars();
        while let Some(c) = chars.next() {
            if c == '\x1b' {
                // CSI: ESC [ parameters final-byte.
                for e in chars.by_ref() {
                    if e.is_ascii_alphabetic() {
                        break;
                    }
                }
                continue;
            }
            let (t, b) = match c {
                '█' => (true, true),
                '▀' => (true, false),
                '▄' => (false, true),
                _ => (false, false),
            };
            top.push(t);
            bottom.push(b);
        }
        rows.push(top);
        rows.push(bottom);
    }
    rows
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    /// Draws `rows` as a greyscale image, `scale` pixels per module, and decodes it.
    fn decode(rows: &[Vec<bool>], scale: usize) -> String {
        let h = rows.len() * scale;
        let w = rows[0].len() * scale;
        let mut img = rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| {
            if rows[y / scale].get(x / scale).copied().unwrap_or(false) {
                0
            } else {
                255
            }
        });
        let grids = img.detect_grids();
        assert_eq!(grids.len(), 1, "one QR code in the picture");
        grids[0].decode().unwrap().1
    }

    #[test]
    fn both_renderings_decode_and_keep_their_quiet_zone() {
        let uri = "aura://import/v1/AEAACAQDAQCQMBYIBEFAWDANBYH2KF3KMAAJS2H7LQQYTDIJQSFTT6D6";
        for colors in [false, true] {
            let qr = render(uri, colors).unwrap();
            assert_eq!(qr.level, "M");
            assert_eq!(qr.columns, qr.modules + 8);
            assert_eq!(qr.lines, qr.columns.div_ceil(2));
            assert_eq!(qr.text.lines().count(), qr.lines);
            assert_eq!(qr.text.contains('\x1b'), colors);
            let rows = modules_of(&qr.text);
            assert!(rows.iter().all(|r| r.len() == qr.columns));
            // Four light modules on every side.
            for (y, row) in rows.iter().enumerate() {
                for (x, dark) in row.iter().enumerate() {
                    let inside = (QUIET_ZONE..QUIET_ZONE + qr.modules).contains(&x)
                        && (QUIET_ZONE..QUIET_ZONE + qr.modules).contains(&y);
                    assert!(inside || !dark, "dark module at {x},{y} in the quiet zone");
                }
            }
            assert_eq!(decode(&rows, 3), uri);
        }
    }

    #[test]
    fn level_l_when_m_is_full_and_an_error_past_version_40() {
        // Upper-case base32 after the prefix: the alphanumeric mode's 45 characters.
        let fill = |n: usize| format!("aura://import/v1/{}", "A".repeat(n));
        let qr = render(&fill(4200), false).unwrap();
        assert_eq!((qr.version, qr.level), (40, "L"));
        let e = render(&fill(5000), false).unwrap_err().to_string();
        assert!(e.contains("too long for one QR code"), "{e}");
        assert!(e.contains("5017 characters"), "{e}");
    }
}
