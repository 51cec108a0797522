//! The frame checksum in one pass over the frame.
//!
//! The checksum is CRC-32/ISO-HDLC over the virtual stream `V = frame[0..28] ++ frame[32..]`
//! (`L = len - 4` bytes). With a zero CRC register, leading zero bytes change nothing, and
//! starting from `0xFFFF_FFFF` is the same as inverting the first 4 data bytes and starting
//! from zero. So the checksum is the zero-register CRC of
//! `W = zeros(pad) ++ V'`, finally inverted, where `V'` is `V` with its first 4 bytes
//! inverted and `pad = (16 - L % 16) % 16` makes `W` a whole number of 16-byte blocks.
//!
//! On x86-64 with PCLMULQDQ and SSE4.1 the blocks of `W` are built straight from frame memory
//! (bounds-checked 16-byte reads, at most two per block, all inside the frame), folded with
//! carry-less multiplies (by 1 block, or by 4 over 8 or more payload blocks) and reduced to 32
//! bits with a Barrett reduction. When 256 or more payload bytes remain after the header blocks,
//! the CRC so far is handed to `crc32fast`, whose wide (AVX2/AVX-512) kernels finish the frame
//! faster. Other architectures, CPUs without the features and slices shorter than a header use
//! `crc32fast` with two updates ([`fallback`]).
#![allow(unsafe_code)]

use super::header::{CHECKED_HEADER, FLAG_BRIDGED, HEADER_SIZE, Header};

/// CRC-32/ISO-HDLC of a whole frame: header bytes 0..28, then the payload.
#[inline]
pub fn checksum(frame: &[u8]) -> u32 {
    frame_checksum(frame)
}

/// Marks a whole frame as bridged: sets [`FLAG_BRIDGED`] and, when the frame carries a
/// checksum (non-zero), computes it again over the changed header. `None` when `frame` is
/// shorter than a header.
pub fn mark_bridged(frame: &mut [u8]) -> Option<()> {
    let header = Header::view_mut(frame)?;
    header.set_flags(header.flags() | FLAG_BRIDGED);
    if header.checksum() != 0 {
        let sum = checksum(frame);
        Header::view_mut(frame)?.set_checksum(sum);
    }
    Some(())
}

/// CRC-32/ISO-HDLC of header bytes `0..28` followed by the payload `frame[32..]`.
///
/// Any slice is accepted; a slice shorter than a header is checksummed as its first
/// `min(28, len)` bytes.
#[inline]
pub(super) fn frame_checksum(frame: &[u8]) -> u32 {
    #[cfg(target_arch = "x86_64")]
    if x86::supported() {
        // SAFETY: `x86::checksum` needs PCLMULQDQ, SSE2, SSSE3 and SSE4.1, which `supported`
        // just detected at runtime.
        return unsafe { x86::checksum(frame) };
    }
    fallback(frame)
}

/// The portable path: `crc32fast` over the header part, then over the payload.
pub(super) fn fallback(frame: &[u8]) -> u32 {
    let (header, payload) = frame.split_at(HEADER_SIZE.min(frame.len()));
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&header[..CHECKED_HEADER.min(header.len())]);
    hasher.update(payload);
    hasher.finalize()
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use core::arch::x86_64::{
        __m128i, _mm_and_si128, _mm_blendv_epi8, _mm_clmulepi64_si128, _mm_extract_epi32, _mm_set_epi32,
        _mm_set_epi64x, _mm_shuffle_epi8, _mm_srli_si128, _mm_xor_si128,
    };

    use super::{CHECKED_HEADER, HEADER_SIZE};

    /// Bytes skipped between the checked header and the payload (the checksum field).
    const GAP_LEN: usize = HEADER_SIZE - CHECKED_HEADER;

    // The published constants for the bit-reflected CRC-32 polynomial (Intel's "Fast CRC
    // computation for generic polynomials using PCLMULQDQ", as used by zlib, Linux and
    // crc32fast). Each fold pair is (x^(D+32) mod P, x^(D-32) mod P), bit-reflected, for a
    // fold distance of D bits.
    /// Fold by 512 bits (4 blocks), low and high 64-bit halves.
    const K1: i64 = 0x1_5444_2bd4;
    const K2: i64 = 0x1_c6e4_1596;
    /// Fold by 128 bits (1 block), low and high 64-bit halves.
    const K3: i64 = 0x1_7519_97d0;
    const K4: i64 = 0x0_ccaa_009e;
    /// 64 → 32-bit step before the Barrett reduction.
    const K5: i64 = 0x1_63cd_6124;
    /// The polynomial P(x) (reflected, with its x^32 term) and μ = ⌊x^64 / P(x)⌋ (reflected).
    const P_X: i64 = 0x1_db71_0641;
    const MU: i64 = 0x1_f701_1641;

    /// Payload runs of this many bytes or more are left to crc32fast's wide kernels.
    const HANDOFF: usize = 256;

    /// `FIRST_BYTES[16 - k..32 - k]` is a mask of the first `k` bytes (`k <= 16`).
    const FIRST_BYTES: [u8; 32] = {
        let mut table = [0; 32];
        let mut i = 0;
        while i < 16 {
            table[i] = 0xFF;
            i += 1;
        }
        table
    };
    /// `SHIFT_UP[16 - n..32 - n]` is the byte shuffle that moves a vector up by `n` bytes
    /// (`n <= 16`), zero-filling (a shuffle index with bit 7 set gives 0).
    const SHIFT_UP: [u8; 32] = {
        let mut table = [0x80; 32];
        let mut i = 0;
        while i < 16 {
            table[16 + i] = i as u8;
            i += 1;
        }
        table
    };

    /// Whether the CPU has the features [`checksum`] enables (std caches the detection).
    #[inline]
    pub(super) fn supported() -> bool {
        std::is_x86_feature_detected!("pclmulqdq")
            && std::is_x86_feature_detected!("sse2")
            && std::is_x86_feature_detected!("ssse3")
            && std::is_x86_feature_detected!("sse4.1")
    }

    /// The CRC of a frame of at least 32 bytes; shorter slices go to [`super::fallback`].
    #[target_feature(enable = "pclmulqdq,sse2,ssse3,sse4.1")]
    pub(super) fn checksum(frame: &[u8]) -> u32 {
        let len = frame.len();
        if len < HEADER_SIZE {
            return super::fallback(frame);
        }
        // V is `frame[..28] ++ frame[32..]`, of length `l >= 28`; W = zeros(pad) ++ V'.
        let l = len - GAP_LEN;
        let pad = l.wrapping_neg() % 16;
        let fold1 = _mm_set_epi64x(K4, K3);

        // Block 0 of W: `pad` zeros, then V'[..16 - pad] = frame[..16 - pad] with the first 4
        // bytes inverted (when pad > 12 the shift drops some of the inverted bytes: block 1
        // inverts them again). Reads frame[0..16].
        let inverted = _mm_xor_si128(load(frame, 0), first_bytes(4));
        let mut acc = _mm_shuffle_epi8(inverted, load(&SHIFT_UP, 16 - pad));

        // The next blocks start at V offset `s = 16k - pad`; while `s < 28` they touch the header
        // (one or two blocks, the last of them possibly spanning the gap).
        let mut s = 16 - pad;
        while s < CHECKED_HEADER {
            acc = _mm_xor_si128(fold(acc, fold1), spanning(frame, s));
            s += 16;
        }

        // The remaining blocks are V[s..] = frame[s + 4..], contiguous and a whole number of
        // blocks (`l - s` is a multiple of 16 and, as the last block started before `l`,
        // `s <= l`, so `s + 4 <= len`).
        let tail = frame.get(s + GAP_LEN..).unwrap_or_default();
        if tail.len() >= HANDOFF {
            // `reduce(acc)` is the CRC of V[..s]; crc32fast continues it over the rest.
            let mut hasher = crc32fast::Hasher::new_with_initial(reduce(acc));
            hasher.update(tail);
            return hasher.finalize();
        }
        let (mut blocks, _) = tail.as_chunks::<16>();
        if blocks.len() >= 8 {
            // Fold by 4: four accumulators a block apart, each folded over 4 blocks at a time.
            let (groups, rest) = blocks.as_chunks::<4>();
            let fold4 = _mm_set_epi64x(K2, K1);
            // Stream `i` holds the blocks at index `4g + i`; `acc` sits at index -1, stream 3.
            let mut x = [zero(), zero(), zero(), acc];
            for group in groups {
                for (x, block) in x.iter_mut().zip(group) {
                    *x = _mm_xor_si128(fold(*x, fold4), vector(u128::from_le_bytes(*block)));
                }
            }
            acc = _mm_xor_si128(fold(x[0], fold1), x[1]);
            acc = _mm_xor_si128(fold(acc, fold1), x[2]);
            acc = _mm_xor_si128(fold(acc, fold1), x[3]);
            blocks = rest;
        }
        for block in blocks {
            acc = _mm_xor_si128(fold(acc, fold1), vector(u128::from_le_bytes(*block)));
        }
        reduce(acc)
    }

    /// Block of V' at offset `0 < s < 28` (where `s + 16 <= l`, or `s <= 12`): the bytes before
    /// the gap from `frame[s..]`, the rest from `frame[s + 4..]`, and V bytes 0..4 inverted if
    /// the block holds some of them. Reads `frame[s..s + 20]`, which is in bounds:
    /// `s + 20 <= 32 <= len` when `s <= 12`, else `s + 20 <= l + 4 = len`.
    #[inline]
    #[target_feature(enable = "sse2,sse4.1")]
    fn spanning(frame: &[u8], s: usize) -> __m128i {
        let before = load(frame, s);
        let after = load(frame, s + GAP_LEN);
        // Keep the first `CHECKED_HEADER - s` bytes (all 16 when the block ends before the gap).
        let block = _mm_blendv_epi8(after, before, first_bytes((CHECKED_HEADER - s).min(16)));
        // V bytes s..4 (none once s >= 4) are the inverted ones.
        _mm_xor_si128(block, first_bytes(4usize.saturating_sub(s)))
    }

    /// The mask of the first `k <= 16` bytes.
    #[inline]
    #[target_feature(enable = "sse2")]
    fn first_bytes(k: usize) -> __m128i {
        load(&FIRST_BYTES, 16 - k)
    }

    /// The 16 bytes at `bytes[at..at + 16]`.
    #[inline]
    #[target_feature(enable = "sse2")]
    fn load(bytes: &[u8], at: usize) -> __m128i {
        let mut block = [0u8; 16];
        block.copy_from_slice(&bytes[at..at + 16]);
        vector(u128::from_le_bytes(block))
    }

    #[inline]
    #[target_feature(enable = "sse2")]
    fn vector(x: u128) -> __m128i {
        _mm_set_epi64x((x >> 64) as i64, x as i64)
    }

    #[inline]
    #[target_feature(enable = "sse2")]
    fn zero() -> __m128i {
        _mm_set_epi64x(0, 0)
    }

    /// `x` carried forward by the distance of `keys`: `x.lo * keys.lo ^ x.hi * keys.hi`.
    #[inline]
    #[target_feature(enable = "pclmulqdq,sse2")]
    fn fold(x: __m128i, keys: __m128i) -> __m128i {
        _mm_xor_si128(_mm_clmulepi64_si128::<0x00>(x, keys), _mm_clmulepi64_si128::<0x11>(x, keys))
    }

    /// 128 → 32 bits: fold to 96 and 64 bits, then Barrett-reduce; returns the inverted CRC.
    #[inline]
    #[target_feature(enable = "pclmulqdq,sse2,sse4.1")]
    fn reduce(x: __m128i) -> u32 {
        let low32 = _mm_set_epi32(0, 0, 0, -1);
        // x.lo * K4 ^ x >> 64 (96 bits).
        let x =
            _mm_xor_si128(_mm_clmulepi64_si128::<0x10>(x, _mm_set_epi64x(K4, K3)), _mm_srli_si128::<8>(x));
        // (x mod 2^32) * K5 ^ x >> 32 (64 bits).
        let x = _mm_xor_si128(
            _mm_clmulepi64_si128::<0x00>(_mm_and_si128(x, low32), _mm_set_epi64x(0, K5)),
            _mm_srli_si128::<4>(x),
        );
        // Barrett: T1 = (x mod 2^32) * μ, T2 = (T1 mod 2^32) * P, CRC = bits 32..64 of x ^ T2.
        let pmu = _mm_set_epi64x(MU, P_X);
        let t1 = _mm_clmulepi64_si128::<0x10>(_mm_and_si128(x, low32), pmu);
        let t2 = _mm_clmulepi64_si128::<0x00>(_mm_and_si128(t1, low32), pmu);
        !(_mm_extract_epi32::<1>(_mm_xor_si128(x, t2)) as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::RelayDomain;
    use zerocopy::IntoBytes;

    #[test]
    fn checksum_skips_the_checksum_field() {
        let mut bytes = Header::new(RelayDomain::Signal, 2, 0, 0, 0).as_bytes().to_vec();
        bytes[24] = 2;
        bytes.extend_from_slice(&[7, 0]);
        let crc = checksum(&bytes);
        let mut covered = bytes[..28].to_vec();
        covered.extend_from_slice(&[7, 0]);
        assert_eq!(crc, crc32fast::hash(&covered));
        bytes[28..32].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(checksum(&bytes), crc);
    }

    #[test]
    fn mark_bridged_sets_bit_0_and_keeps_a_checksum_valid() {
        let mut frame = [0u8; 40];
        frame[..HEADER_SIZE].copy_from_slice(Header::new(RelayDomain::Execution, 3, 7, 9, 8).as_bytes());
        frame[HEADER_SIZE..].copy_from_slice(&[1, 6, 0, 0, 0, 0, 0, 0]);
        let sum = checksum(&frame);
        Header::view_mut(&mut frame).unwrap().set_checksum(sum);
        mark_bridged(&mut frame).unwrap();
        let header = Header::view(&frame).unwrap();
        assert!(header.is_bridged());
        assert_ne!(header.checksum(), sum, "the flag is covered by the checksum");
        assert_eq!(header.checksum(), checksum(&frame));
        // A frame without a checksum keeps none.
        let mut plain = [0u8; 40];
        plain[..HEADER_SIZE].copy_from_slice(Header::new(RelayDomain::MarketData, 3, 7, 9, 8).as_bytes());
        mark_bridged(&mut plain).unwrap();
        assert_eq!((Header::view(&plain).unwrap().flags(), Header::view(&plain).unwrap().checksum()), (1, 0));
        assert!(mark_bridged(&mut [0u8; 31]).is_none());
    }

    /// The definition: `crc32fast` over the covered bytes, copied contiguously.
    fn reference(frame: &[u8]) -> u32 {
        let header = &frame[..CHECKED_HEADER.min(frame.len())];
        let payload = frame.get(HEADER_SIZE..).unwrap_or_default();
        crc32fast::hash(&[header, payload].concat())
    }

    fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
        let mut state = seed | 1;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 32) as u8
            })
            .collect()
    }

    /// Every implementation on `frame` (an exact-length slice), against the reference.
    fn check(frame: &[u8]) {
        let expected = reference(frame);
        let len = frame.len();
        assert_eq!(frame_checksum(frame), expected, "dispatch, len {len}");
        assert_eq!(fallback(frame), expected, "fallback, len {len}");
        #[cfg(target_arch = "x86_64")]
        if x86::supported() {
            // SAFETY: `supported` just detected the features `x86::checksum` enables.
            let simd = unsafe { x86::checksum(frame) };
            assert_eq!(simd, expected, "pclmulqdq, len {len}");
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn simd_path_is_available_here() {
        // The other tests would silently test only the fallback without it.
        assert!(x86::supported());
    }

    #[test]
    fn every_length_up_to_600() {
        for len in HEADER_SIZE..=600 {
            for seed in 1..=4u64 {
                check(&random_bytes(len, seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ len as u64));
            }
        }
    }

    #[test]
    fn large_frames() {
        for len in [1023, 1024, 4096, 4097, 65_536 + 37, 131_072, 131_072 + 15] {
            check(&random_bytes(len, len as u64));
        }
    }

    #[test]
    fn constant_frames() {
        for len in HEADER_SIZE..=200 {
            check(&vec![0; len]);
            check(&vec![0xFF; len]);
        }
    }

    #[test]
    fn shorter_than_a_header() {
        for len in 0..HEADER_SIZE {
            let frame = random_bytes(len, 7 + len as u64);
            check(&frame);
            assert_eq!(frame_checksum(&frame), crc32fast::hash(&frame[..len.min(CHECKED_HEADER)]));
        }
    }

    #[test]
    fn known_value() {
        // V = "The quick brown fox jumps over the lazy dog", whose CRC-32 is 0x414FA339.
        let mut frame = [0u8; 47];
        frame[..28].copy_from_slice(b"The quick brown fox jumps ov");
        frame[28..32].copy_from_slice(&[1, 2, 3, 4]);
        frame[32..].copy_from_slice(b"er the lazy dog");
        check(&frame);
        assert_eq!(frame_checksum(&frame), 0x414F_A339);
    }

    #[test]
    fn checksum_field_is_ignored() {
        let mut frame = random_bytes(74, 99);
        let crc = frame_checksum(&frame);
        frame[28..32].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(frame_checksum(&frame), crc);
        frame[27] ^= 1;
        assert_ne!(frame_checksum(&frame), crc);
    }
}
