use super::*;
use crate::index::{ListPolicy, Query};

/// A pseudo-random hash per seed (splitmix64): any two are about 128 bits apart.
fn frame(seed: u8, quality: u8) -> Frame {
    let mut state = u64::from(seed).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let mut pdq = [0u8; 32];
    for chunk in pdq.chunks_exact_mut(8) {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        chunk.copy_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    Frame { pdq, quality }
}

fn flip(mut f: Frame, bits: usize) -> Frame {
    for i in 0..bits {
        f.pdq[i % 32] ^= 1 << (i / 32);
    }
    f
}

#[test]
fn low_quality_and_repeated_frames_do_not_count() {
    let frames = [frame(1, 90), frame(1, 95), frame(2, 49), frame(3, 50)];
    assert_eq!(
        frames_that_count(&frames),
        [frame(1, 0).pdq, frame(3, 0).pdq]
    );
}

#[test]
fn shares_count_each_side_and_the_distance_is_inclusive() {
    let listed: Vec<Pdq256> = (0..10).map(|s| frame(s, 100).pdq).collect();
    // A clip: 4 of the listed frames, 31 bits off, and one unrelated frame.
    let mut query: Vec<Pdq256> = (2..6).map(|s| flip(frame(s, 100), 31).pdq).collect();
    query.push(frame(200, 100).pdq);
    let s = share(&query, &listed, 31);
    assert_eq!(s.frames, 4);
    assert_eq!(s.query_percent, 80.0);
    assert_eq!(s.compared_percent, 40.0);
    assert!(s.matches(DEFAULT_QUERY_PERCENT, DEFAULT_COMPARED_PERCENT));
    assert!(!s.matches(80.0, 50.0));
    // One bit further and nothing is in common.
    let far: Vec<Pdq256> = (2..6).map(|s| flip(frame(s, 100), 32).pdq).collect();
    let s = share(&far, &listed, 31);
    assert_eq!((s.frames, s.query_percent), (0, 0.0));
    assert!(!s.matches(0.0, 0.0));
    assert_eq!(share(&[], &listed, 31).frames, 0);
    assert_eq!(share(&query, &[], 31).compared_percent, 0.0);
}

use crate::hashset::format::{EntryTable, Header, VideoShare};
use crate::kinds::HashValue;
use rand::{RngExt, SeedableRng};

/// A random PDQ hash.
fn random_pdq(rng: &mut rand::rngs::SmallRng) -> Pdq256 {
    let mut pdq = [0u8; 32];
    for chunk in pdq.chunks_exact_mut(8) {
        chunk.copy_from_slice(&rng.random::<u64>().to_le_bytes());
    }
    pdq
}

/// `pdq` with `bits` random bits flipped (some may flip back: at most `bits` apart).
fn nudge(rng: &mut rand::rngs::SmallRng, mut pdq: Pdq256, bits: u32) -> Pdq256 {
    for _ in 0..bits {
        let bit = rng.random_range(0..256usize);
        pdq[bit / 8] ^= 1 << (bit % 8);
    }
    pdq
}

/// A synthetic video as video frames are: each frame a few bits from the one before, with
/// now and then a cut to a new scene, a low-quality frame and a repeated frame.
fn video(rng: &mut rand::rngs::SmallRng, frames: usize) -> Vec<Frame> {
    let mut out: Vec<Frame> = Vec::new();
    let mut pdq = random_pdq(rng);
    for _ in 0..frames {
        pdq = if rng.random_ratio(1, 20) {
            random_pdq(rng)
        } else {
            nudge(rng, pdq, 12)
        };
        let quality = if rng.random_ratio(1, 10) { 30 } else { 90 };
        out.push(Frame { pdq, quality });
        if rng.random_ratio(1, 10) {
            out.push(Frame { pdq, quality: 95 });
        }
    }
    out
}

pub(crate) fn video_set(
    name: &str,
    videos: &[(&str, &str, Vec<Frame>)],
    images: &[(&str, Pdq256)],
    share: VideoShare,
) -> Arc<HashSetFile> {
    let mut t = EntryTable::new();
    for (category, reference, frames) in videos {
        for f in frames {
            t.push(HashValue::vpdq(&f.pdq, f.quality), category, reference)
                .unwrap();
        }
    }
    for (reference, pdq) in images {
        t.push(
            HashValue::from_bytes(HashKind::Pdq, pdq).unwrap(),
            "img",
            reference,
        )
        .unwrap();
    }
    let header = Header {
        name: name.into(),
        version: 1,
        created: 0,
        expires: 1,
        description: String::new(),
        thresholds: Vec::new(),
        severity: vec!["A".into(), "B".into()],
        video_share: share,
    };
    Arc::new(HashSetFile::parse(t.to_set_bytes(&header).unwrap().0).unwrap())
}

/// A set of `listed` videos (category A) and its vpdq section.
fn listed_set(
    listed: &[(String, Vec<Frame>)],
) -> (Arc<crate::hashset::format::HashSetFile>, Section) {
    let refs: Vec<(&str, &str, Vec<Frame>)> = listed
        .iter()
        .map(|(r, f)| ("A", r.as_str(), f.clone()))
        .collect();
    let set = video_set("videos", &refs, &[], VideoShare::DEFAULT);
    let section = set
        .sections()
        .iter()
        .find(|s| s.kind == HashKind::Vpdq)
        .unwrap()
        .clone();
    (set, section)
}

#[test]
fn indexed_shares_are_the_brute_force_shares() {
    // Random lists of videos and query videos that are clips of them (frames a few bits
    // off), of nothing, or of several: for every video, the index finds exactly the frames
    // in common that the definition finds, at several thresholds.
    for seed in 0..6u64 {
        let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
        let listed: Vec<(String, Vec<Frame>)> = (0..40)
            .map(|i| {
                let n = rng.random_range(1..60);
                (format!("v{i}"), video(&mut rng, n))
            })
            .collect();
        let (set, section) = listed_set(&listed);
        for threshold in [0, 16, 31, 40] {
            let frames = VideoFrames::build(&set, &section, threshold).unwrap();
            for q in 0..8 {
                let mut query: Vec<Frame> = Vec::new();
                for (_, f) in listed.iter().skip(q * 5).take(q % 3) {
                    let from = rng.random_range(0..f.len());
                    for frame in &f[from..f.len().min(from + 20)] {
                        let bits = rng.random_range(0..40);
                        query.push(Frame {
                            pdq: nudge(&mut rng, frame.pdq, bits),
                            quality: frame.quality,
                        });
                    }
                }
                query.extend(video(&mut rng, 5));
                let counted = frames_that_count(&query);
                let hits = frames.shares(&counted, threshold);
                for (reference, f) in &listed {
                    let expected = share(&counted, &frames_that_count(f), threshold);
                    let hit = hits
                        .iter()
                        .find(|h| set.entry(&section, h.entry).reference == reference);
                    match hit {
                        None => assert_eq!(expected.frames, 0, "{reference} at {threshold}"),
                        Some(h) => {
                            assert_eq!(h.query_frames as usize, expected.frames);
                            assert_eq!(h.query_percent(counted.len()), expected.query_percent);
                            assert_eq!(h.compared_percent(), expected.compared_percent);
                            assert_eq!(
                                h.meets(VideoShare::DEFAULT, counted.len()),
                                expected.matches(80.0, 0.0)
                            );
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn searching_part_of_the_query_finds_every_video_that_can_reach_the_minimum() {
    // Lists whose videos share shots (so one query frame finds several videos) and queries
    // mixing clips of several: for every minimum and both ways of finishing (frame by frame,
    // or searching the rest), each video with at least that many frames in common is found
    // with its exact share, and whatever else is returned is exact too.
    for seed in 0..4u64 {
        let mut rng = rand::rngs::SmallRng::seed_from_u64(100 + seed);
        let shots: Vec<Frame> = video(&mut rng, 30);
        let listed: Vec<(String, Vec<Frame>)> = (0..30)
            .map(|i| {
                let len = rng.random_range(1..30);
                let mut frames = video(&mut rng, len);
                for _ in 0..rng.random_range(0..6) {
                    let shot = shots[rng.random_range(0..shots.len())];
                    frames.push(Frame {
                        pdq: nudge(&mut rng, shot.pdq, 4),
                        quality: 90,
                    });
                }
                (format!("v{i}"), frames)
            })
            .collect();
        let (set, section) = listed_set(&listed);
        let frames = VideoFrames::build(&set, &section, 31).unwrap();
        for q in 0..10 {
            let mut query: Vec<Frame> = Vec::new();
            for (_, f) in listed.iter().skip(q * 3).take(1 + q % 3) {
                let from = rng.random_range(0..f.len());
                for frame in &f[from..] {
                    let bits = rng.random_range(0..36);
                    query.push(Frame {
                        pdq: nudge(&mut rng, frame.pdq, bits),
                        quality: frame.quality,
                    });
                }
            }
            query.extend(video(&mut rng, q % 4));
            let counted = frames_that_count(&query);
            for min in [1, 2, 3, counted.len() / 2, counted.len(), counted.len() + 5] {
                for budget in [0, DISTANCES_PER_SEARCH, u64::MAX] {
                    let hits = frames.shares_within_budget(&counted, 31, min, budget);
                    for (reference, f) in &listed {
                        let expected = share(&counted, &frames_that_count(f), 31);
                        let hit = hits
                            .iter()
                            .find(|h| set.entry(&section, h.entry).reference == reference);
                        let context = format!("{reference}, min {min}, budget {budget}");
                        match hit {
                            None => assert!(
                                expected.frames < min.max(1),
                                "{context}: missed {expected:?}"
                            ),
                            Some(h) => {
                                assert_eq!(h.query_frames as usize, expected.frames, "{context}");
                                assert_eq!(h.compared_percent(), expected.compared_percent);
                                let brute = brute_distance(&counted, &frames_that_count(f));
                                assert_eq!(h.distance, brute, "{context}");
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The smallest distance between a frame of each (brute force).
fn brute_distance(a: &[Pdq256], b: &[Pdq256]) -> u32 {
    a.iter()
        .flat_map(|x| b.iter().map(move |y| hamming_bytes(x, y)))
        .min()
        .unwrap_or(u32::MAX)
}

#[test]
fn the_fewest_frames_that_can_match_agree_with_the_rule() {
    for query in [0u16, 1, 3333, 5000, 8000, 9999, 10_000] {
        let rule = VideoShare { query, compared: 0 };
        for len in 1..60usize {
            let min = rule.min_frames(len);
            let hit = |n: u32| VideoHit {
                entry: 0,
                query_frames: n,
                listed_frames: 1,
                frames: 1,
                distance: 0,
            };
            assert!(hit(min as u32).meets(rule, len), "{query} of {len}: {min}");
            assert!(min == 1 || !hit(min as u32 - 1).meets(rule, len));
        }
    }
}

#[test]
fn a_share_exactly_at_the_minimum_matches() {
    let hit = VideoHit {
        entry: 0,
        query_frames: 4,
        listed_frames: 1,
        frames: 8,
        distance: 0,
    };
    let rule = |q, c| VideoShare::from_percents(q, c).unwrap();
    assert!(hit.meets(rule(80.0, 12.5), 5));
    assert!(!hit.meets(rule(80.01, 0.0), 5));
    assert!(!hit.meets(rule(0.0, 12.51), 5));
    assert!(
        !VideoHit {
            query_frames: 0,
            ..hit
        }
        .meets(rule(0.0, 0.0), 5)
    );
}

#[test]
fn videos_images_and_frames_match_one_another() {
    let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
    let listed = video(&mut rng, 50);
    let other = video(&mut rng, 50);
    let still = random_pdq(&mut rng);
    let set = video_set(
        "videos",
        &[
            ("B", "vid-1", listed.clone()),
            ("A", "vid-2", other.clone()),
        ],
        &[("img-1", still)],
        VideoShare::DEFAULT,
    );
    let index = Index::build(vec![set]).unwrap();
    // The listed video re-encoded: every frame a few bits off, and one frame is the image.
    let mut query: Vec<Frame> = listed
        .iter()
        .map(|f| Frame {
            pdq: nudge(&mut rng, f.pdq, 6),
            quality: f.quality,
        })
        .collect();
    query.push(Frame {
        pdq: still,
        quality: 80,
    });
    let answer = index.match_video(&query, &MatchOptions::ALL);
    assert_eq!(answer.decision(), Decision::Match);
    assert_eq!(answer.frames, frames_that_count(&query).len());
    assert_eq!(answer.matches.len(), 1, "{:?}", answer.matches);
    let m = &answer.matches[0];
    assert_eq!((m.reference.as_str(), m.category.as_str()), ("vid-1", "B"));
    assert_eq!(m.severity, Some(2));
    assert!(m.query_percent >= 80.0 && m.query_percent < 100.0);
    assert_eq!(m.compared_percent, 100.0);
    assert_eq!(answer.images.len(), 1);
    assert_eq!(answer.images[0].frame, query.len() - 1);
    assert_eq!(answer.images[0].found.reference, "img-1");
    // A still image that is a frame of a listed video matches it, reported as a frame.
    let frame = listed.iter().find(|f| f.quality >= 50).unwrap();
    let v = index.match_one(&Query {
        hash: HashValue::from_bytes(HashKind::Pdq, &nudge(&mut rng, frame.pdq, 3)).unwrap(),
        quality: Some(90),
    });
    assert_eq!(v.verdict, Decision::Match);
    assert!(
        v.matches
            .iter()
            .any(|m| m.kind == HashKind::Vpdq && m.reference == "vid-1" && m.distance <= 3),
        "{:?}",
        v.matches
    );
    assert_eq!(
        v.matches.iter().filter(|m| m.reference == "vid-1").count(),
        1
    );
    // Frames under quality 50 are not searched: as a still image, such a frame matches
    // nothing (here a scene of one dark frame).
    let dark = random_pdq(&mut rng);
    let mut with_dark = listed.clone();
    with_dark.push(Frame {
        pdq: dark,
        quality: 20,
    });
    let set = video_set(
        "dark",
        &[("B", "vid-3", with_dark)],
        &[],
        VideoShare::DEFAULT,
    );
    let v = Index::build(vec![set]).unwrap().match_one(&Query {
        hash: HashValue::from_bytes(HashKind::Pdq, &dark).unwrap(),
        quality: Some(90),
    });
    assert_eq!(v.verdict, Decision::NoMatch, "{v:?}");
    // An unrelated video matches nothing; one of only dark frames is low quality.
    let unrelated = video(&mut rng, 50);
    let answer = index.match_video(&unrelated, &MatchOptions::ALL);
    assert_eq!(answer.decision(), Decision::NoMatch, "{answer:?}");
    let dark: Vec<Frame> = unrelated
        .iter()
        .map(|f| Frame { quality: 10, ..*f })
        .collect();
    assert_eq!(
        index.match_video(&dark, &MatchOptions::ALL).decision(),
        Decision::LowQuality
    );
    // Half of the listed video: 100% of the query, about half of the video's frames.
    let half = &listed[..listed.len() / 2];
    let answer = index.match_video(half, &MatchOptions::ALL);
    assert_eq!(answer.matches.len(), 1);
    assert_eq!(answer.matches[0].query_percent, 100.0);
    assert!(answer.matches[0].compared_percent < 70.0);
    // The operator may ask for more of the video: then the half is no match.
    let strict = Index::build(vec![index.lists[0].set().clone()])
        .unwrap()
        .with_policies(|_| ListPolicy {
            video_share: Some(VideoShare::from_percents(0.0, 90.0).unwrap()),
            ..ListPolicy::default()
        });
    assert!(
        strict
            .match_video(half, &MatchOptions::ALL)
            .matches
            .is_empty()
    );
    assert_eq!(
        strict
            .match_video(&listed, &MatchOptions::ALL)
            .matches
            .len(),
        1
    );
}

#[test]
fn allow_lists_withhold_the_videos_and_frames_of_their_lists() {
    let mut rng = rand::rngs::SmallRng::seed_from_u64(11);
    let listed = video(&mut rng, 30);
    let still = random_pdq(&mut rng);
    let block = video_set(
        "block",
        &[("A", "v", listed.clone())],
        &[("i", still)],
        VideoShare::DEFAULT,
    );
    let allow = video_set(
        "allow",
        &[("", "ok", listed.clone())],
        &[("ok-i", still)],
        VideoShare::DEFAULT,
    );
    let index = Index::build(vec![block, allow])
        .unwrap()
        .with_policies(|name| ListPolicy {
            suppresses: if name == "allow" {
                vec!["block".into()]
            } else {
                Vec::new()
            },
            ..ListPolicy::default()
        });
    let mut query = listed.clone();
    query.push(Frame {
        pdq: still,
        quality: 90,
    });
    let answer = index.match_video(&query, &MatchOptions::ALL);
    assert!(
        answer.matches.is_empty() && answer.images.is_empty(),
        "{answer:?}"
    );
    assert_eq!(answer.suppressed.len(), 2);
    assert!(
        answer
            .suppressed
            .iter()
            .all(|s| &*s.withheld.list == "block" && &*s.allow.list == "allow")
    );
    let withheld: Vec<(&str, &str, usize)> = answer
        .suppressed
        .iter()
        .map(|s| {
            (
                s.withheld.reference.as_str(),
                s.allow.reference.as_str(),
                s.query,
            )
        })
        .collect();
    // The still is the query's last frame.
    assert_eq!(withheld, [("v", "ok", 0), ("i", "ok-i", listed.len())]);
    assert_eq!(answer.decision(), Decision::NoMatch);
}
