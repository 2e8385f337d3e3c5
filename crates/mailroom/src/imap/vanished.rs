//! What a client may know that is gone, when a folder's expunge history (bounded by
//! `imap.expunge_history`) no longer reaches back to the client's mod-sequence. RFC 7162
//! §3.2.5.1 lets the server then report every UID of the client's known set that is not in the
//! folder any more: longer than the exact answer, and as correct. Pure, so the ranges are
//! tested on their own.

use mailroom_proto::imap::command::SequenceSet;

/// The UIDs from 1 to `upto` that are in neither ascending list `a` nor `b`, narrowed to
/// `within` (resolved ranges, any order; everything when `None`), as ascending, disjoint
/// ranges. Works on ranges throughout, so a folder whose UIDs run into the billions costs no
/// more than one with a hundred.
pub(super) fn gone(
    a: &[u32],
    b: &[u32],
    upto: u32,
    within: Option<&[(u32, u32)]>,
) -> Vec<(u32, u32)> {
    let mut kept: Vec<u32> = a
        .iter()
        .chain(b)
        .copied()
        .filter(|&u| u >= 1 && u <= upto)
        .collect();
    kept.sort_unstable();
    kept.dedup();
    let mut gaps = Vec::new();
    let mut next = 1u32;
    for &k in &kept {
        if k > next {
            gaps.push((next, k - 1));
        }
        next = k.saturating_add(1);
    }
    if upto >= next && kept.last() != Some(&u32::MAX) {
        gaps.push((next, upto));
    }
    let Some(within) = within else {
        return gaps;
    };
    let mut w: Vec<(u32, u32)> = within.to_vec();
    w.sort_unstable();
    let mut out: Vec<(u32, u32)> = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < gaps.len() && j < w.len() {
        let lo = gaps[i].0.max(w[j].0);
        let hi = gaps[i].1.min(w[j].1);
        if lo <= hi {
            match out.last_mut() {
                Some(last) if last.1 >= lo.saturating_sub(1) => last.1 = last.1.max(hi),
                _ => out.push((lo, hi)),
            }
        }
        if gaps[i].1 < w[j].1 {
            i += 1;
        } else {
            j += 1;
        }
    }
    out
}

/// `VANISHED (EARLIER)`'s set when the history does not reach back far enough: every UID below
/// `uid_next` in `within` (everything when `None`) that is neither in the folder now
/// (`present`) nor in the session's view (whose expunges the session reports itself).
pub(super) fn known_gone(
    present: &[u32],
    view: &super::view::View,
    uid_next: u32,
    within: Option<&SequenceSet>,
) -> String {
    let upto = uid_next.saturating_sub(1);
    let within = within.map(|s| s.resolved(upto.max(1)));
    let view: Vec<u32> = view.mail.iter().map(|m| m.uid).collect();
    text(&gone(present, &view, upto, within.as_deref()))
}

/// Ranges as a sequence set (`1:3,7`).
pub(super) fn text(ranges: &[(u32, u32)]) -> String {
    let parts: Vec<String> = ranges
        .iter()
        .map(|&(lo, hi)| {
            if lo == hi {
                lo.to_string()
            } else {
                format!("{lo}:{hi}")
            }
        })
        .collect();
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_between_kept_uids() {
        type Case<'a> = (&'a [u32], &'a [u32], u32, Option<&'a [(u32, u32)]>, &'a str);
        let cases: &[Case] = &[
            (&[], &[], 0, None, ""),
            (&[], &[], 5, None, "1:5"),
            (&[1, 2, 3], &[], 3, None, ""),
            (&[2, 5], &[], 7, None, "1,3:4,6:7"),
            // Either list keeps a UID; duplicates and UIDs past `upto` are ignored.
            (&[2], &[3, 3, 9], 4, None, "1,4"),
            // Only what the client says it knows.
            (&[2, 5], &[], 7, Some(&[(4, 6)]), "4,6"),
            (&[2, 5], &[], 7, Some(&[(6, 100), (1, 1)]), "1,6:7"),
            (&[], &[], 10, Some(&[(3, 4), (5, 6)]), "3:6"),
            (&[5], &[], 10, Some(&[(7, 7), (1, 9)]), "1:4,6:9"),
            // The largest UIDs do not overflow.
            (
                &[u32::MAX],
                &[],
                u32::MAX,
                Some(&[(u32::MAX - 2, u32::MAX)]),
                "4294967293:4294967294",
            ),
            (
                &[1],
                &[],
                u32::MAX,
                Some(&[(u32::MAX, u32::MAX)]),
                "4294967295",
            ),
        ];
        for (a, b, upto, within, want) in cases {
            assert_eq!(
                text(&gone(a, b, *upto, *within)),
                *want,
                "{a:?} {b:?} {upto} {within:?}"
            );
        }
    }

    #[test]
    fn a_billion_missing_uids_are_one_range() {
        let got = gone(&[1_000_000_000], &[], 1_000_000_001, None);
        assert_eq!(got, vec![(1, 999_999_999), (1_000_000_001, 1_000_000_001)]);
    }
}
