//! Checking the fields read against each other and building the instant.

use chrono::{DateTime, Datelike, FixedOffset, LocalResult, NaiveDate, NaiveTime};

use super::error::clip;
use super::{Cursor, Fields, ParseError};
use crate::javadate::zone::Zone;

impl Cursor<'_> {
    /// Checks the fields against each other and builds the instant.
    pub(super) fn resolve(
        &self,
        f: &Fields,
        zone: &Zone,
    ) -> Result<DateTime<FixedOffset>, ParseError> {
        let (year, month, day) = match (f.year, f.month, f.day) {
            (None, _, _) => return Err(self.incomplete("year (y)")),
            (_, None, _) => return Err(self.incomplete("month (M)")),
            (_, _, None) => return Err(self.incomplete("day of month (d)")),
            (Some(y), Some(m), Some(d)) => (y, m, d),
        };
        let date =
            NaiveDate::from_ymd_opt(year, month, day).ok_or_else(|| ParseError::InvalidDate {
                text: clip(self.text),
                pattern: self.pattern.to_owned(),
                date: format!("{year:04}-{month:02}-{day:02}"),
            })?;
        if let Some(weekday) = f.weekday
            && weekday != date.weekday()
        {
            return Err(self.conflict(format!(
                "{weekday} does not match {date}, a {}",
                date.weekday()
            )));
        }
        let local = date.and_time(self.time(f)?);
        let resolved = match f.offset_seconds {
            Some(seconds) => {
                FixedOffset::east_opt(seconds).map_or(LocalResult::None, LocalResult::Single)
            }
            None => match zone.offsets_at_local(local) {
                LocalResult::None => {
                    return Err(ParseError::NonexistentLocalTime {
                        text: clip(self.text),
                        pattern: self.pattern.to_owned(),
                        local,
                        zone: zone.to_string(),
                    });
                }
                offsets => offsets,
            },
        };
        // Java's rule for an overlap: the earlier offset, i.e. the earlier
        // instant, which is the larger offset.
        let offset = match resolved {
            LocalResult::Single(offset) => Some(offset),
            LocalResult::Ambiguous(a, b) => Some(if a.local_minus_utc() >= b.local_minus_utc() {
                a
            } else {
                b
            }),
            LocalResult::None => None,
        };
        offset
            .and_then(|offset| {
                let utc = local.checked_sub_offset(offset)?;
                Some(DateTime::from_naive_utc_and_offset(utc, offset))
            })
            .ok_or_else(|| self.out_of_range("date", local, "(beyond chrono's range)"))
    }

    /// The time of day: an hour (`H`, or `h` with `a`) then optionally
    /// minutes, then seconds, then a fraction; missing trailing fields are
    /// zero, and with no time fields at all the time is midnight.
    fn time(&self, f: &Fields) -> Result<NaiveTime, ParseError> {
        let pm = f.am_pm.map(|name| name == "PM");
        let hour = match (f.hour24, f.hour12, pm) {
            (Some(h), h12, pm) => {
                let pm_ok = pm.is_none_or(|pm| pm == (h >= 12));
                let h12_ok = h12.is_none_or(|h12| h12 % 12 == h % 12);
                if !pm_ok || !h12_ok {
                    return Err(self.conflict(format!(
                        "hour {h} does not match the clock hour or AM/PM also given"
                    )));
                }
                Some(h)
            }
            (None, Some(h12), Some(pm)) => Some(h12 % 12 + if pm { 12 } else { 0 }),
            (None, Some(_), None) => {
                return Err(self.incomplete("AM/PM (a) to go with the clock hour (h)"));
            }
            (None, None, Some(_)) => {
                return Err(self.incomplete("hour (H or h) to go with AM/PM (a)"));
            }
            (None, None, None) => None,
        };
        let has_second = f.second.is_some() || f.nano.is_some();
        let missing = if hour.is_none() && (f.minute.is_some() || has_second) {
            Some("hour (H or h)")
        } else if f.minute.is_none() && has_second {
            Some("minute (m)")
        } else if f.second.is_none() && f.nano.is_some() {
            Some("second (s)")
        } else {
            None
        };
        if let Some(missing) = missing {
            return Err(self.incomplete(missing));
        }
        NaiveTime::from_hms_nano_opt(
            hour.unwrap_or(0),
            f.minute.unwrap_or(0),
            f.second.unwrap_or(0),
            f.nano.unwrap_or(0),
        )
        .ok_or_else(|| self.conflict("invalid time of day".to_owned()))
    }
}
