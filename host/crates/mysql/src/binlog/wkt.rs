//! Geometry values as the binlog carries them (a 4-byte SRID, then WKB)
//! turned into the WKT text the snapshot reads with `ST_AsText`.

use std::fmt::Write;

/// `mariadb` picks the server's spelling of multipoints: MariaDB writes
/// `MULTIPOINT(1 1,2 2)`, MySQL `MULTIPOINT((1 1),(2 2))`.
pub(super) fn to_wkt(bytes: &[u8], mariadb: bool) -> Result<String, String> {
    let wkb = bytes
        .get(4..)
        .ok_or_else(|| format!("a geometry of {} bytes has no SRID", bytes.len()))?;
    let mut reader = Reader {
        bytes: wkb,
        at: 0,
        mariadb,
    };
    let mut out = String::new();
    reader.geometry(&mut out, true)?;
    if reader.at != wkb.len() {
        return Err(format!(
            "{} bytes left after the geometry",
            wkb.len() - reader.at
        ));
    }
    Ok(out)
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
    mariadb: bool,
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let slice = self
            .bytes
            .get(self.at..self.at + N)
            .ok_or_else(|| "the geometry ends too early".to_string())?;
        self.at += N;
        let mut out = [0u8; N];
        out.copy_from_slice(slice);
        Ok(out)
    }

    fn u32(&mut self, little: bool) -> Result<u32, String> {
        let b = self.take::<4>()?;
        Ok(if little {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        })
    }

    fn f64(&mut self, little: bool) -> Result<f64, String> {
        let b = self.take::<8>()?;
        Ok(if little {
            f64::from_le_bytes(b)
        } else {
            f64::from_be_bytes(b)
        })
    }

    fn point(&mut self, out: &mut String, little: bool) -> Result<(), String> {
        let x = self.f64(little)?;
        let y = self.f64(little)?;
        let _ = write!(out, "{x} {y}");
        Ok(())
    }

    /// `(x y,x y,…)`
    fn points(&mut self, out: &mut String, little: bool) -> Result<(), String> {
        let n = self.u32(little)?;
        out.push('(');
        for i in 0..n {
            if i > 0 {
                out.push(',');
            }
            self.point(out, little)?;
        }
        out.push(')');
        Ok(())
    }

    fn rings(&mut self, out: &mut String, little: bool) -> Result<(), String> {
        let n = self.u32(little)?;
        out.push('(');
        for i in 0..n {
            if i > 0 {
                out.push(',');
            }
            self.points(out, little)?;
        }
        out.push(')');
        Ok(())
    }

    /// One WKB geometry; `named` writes its type name (members of a
    /// multi-geometry go without it).
    fn geometry(&mut self, out: &mut String, named: bool) -> Result<(), String> {
        let [order] = self.take::<1>()?;
        let little = match order {
            0 => false,
            1 => true,
            other => return Err(format!("unknown WKB byte order {other}")),
        };
        let kind = self.u32(little)?;
        let name = match kind {
            1 => "POINT",
            2 => "LINESTRING",
            3 => "POLYGON",
            4 => "MULTIPOINT",
            5 => "MULTILINESTRING",
            6 => "MULTIPOLYGON",
            7 => "GEOMETRYCOLLECTION",
            other => return Err(format!("unknown WKB geometry type {other}")),
        };
        if named {
            out.push_str(name);
        }
        match kind {
            1 => {
                out.push('(');
                self.point(out, little)?;
                out.push(')');
            }
            2 => self.points(out, little)?,
            3 => self.rings(out, little)?,
            4..=6 => {
                let n = self.u32(little)?;
                out.push('(');
                for i in 0..n {
                    if i > 0 {
                        out.push(',');
                    }
                    if kind == 4 && self.mariadb {
                        // MariaDB lists bare coordinates.
                        let mut member = String::new();
                        self.geometry(&mut member, false)?;
                        out.push_str(member.trim_start_matches('(').trim_end_matches(')'));
                    } else {
                        self.geometry(out, false)?;
                    }
                }
                out.push(')');
            }
            _ => {
                let n = self.u32(little)?;
                out.push('(');
                for i in 0..n {
                    if i > 0 {
                        out.push(',');
                    }
                    self.geometry(out, true)?;
                }
                out.push(')');
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(x: f64, y: f64) -> Vec<u8> {
        let mut b = vec![1u8];
        b.extend(1u32.to_le_bytes());
        b.extend(x.to_le_bytes());
        b.extend(y.to_le_bytes());
        b
    }

    fn with_srid(wkb: Vec<u8>) -> Vec<u8> {
        let mut b = 0u32.to_le_bytes().to_vec();
        b.extend(wkb);
        b
    }

    #[test]
    fn points_and_collections_are_written_as_the_server_does() {
        assert_eq!(
            to_wkt(&with_srid(point(1.5, -2.0)), true).unwrap(),
            "POINT(1.5 -2)"
        );
        let mut multi = vec![1u8];
        multi.extend(4u32.to_le_bytes());
        multi.extend(2u32.to_le_bytes());
        multi.extend(point(1.0, 1.0));
        multi.extend(point(2.0, 2.0));
        assert_eq!(
            to_wkt(&with_srid(multi.clone()), true).unwrap(),
            "MULTIPOINT(1 1,2 2)"
        );
        assert_eq!(
            to_wkt(&with_srid(multi), false).unwrap(),
            "MULTIPOINT((1 1),(2 2))"
        );
        let mut polygon = vec![1u8];
        polygon.extend(3u32.to_le_bytes());
        polygon.extend(1u32.to_le_bytes());
        polygon.extend(4u32.to_le_bytes());
        for (x, y) in [(0.0f64, 0.0f64), (1.0, 0.0), (1.0, 1.0), (0.0, 0.0)] {
            polygon.extend(x.to_le_bytes());
            polygon.extend(y.to_le_bytes());
        }
        let mut collection = vec![1u8];
        collection.extend(7u32.to_le_bytes());
        collection.extend(2u32.to_le_bytes());
        collection.extend(point(3.0, 4.0));
        collection.extend(polygon);
        assert_eq!(
            to_wkt(&with_srid(collection), true).unwrap(),
            "GEOMETRYCOLLECTION(POINT(3 4),POLYGON((0 0,1 0,1 1,0 0)))"
        );
        assert!(to_wkt(&[0, 0], true).is_err());
        assert!(to_wkt(&with_srid(vec![1, 1, 0, 0, 0, 0]), true).is_err());
    }
}
