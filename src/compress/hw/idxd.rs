//! The user-space ABI of Intel's idxd driver for IAA, as `#[repr(C)]` Rust.
//!
//! An IAA (In-Memory Analytics Accelerator) takes work as 64-byte
//! descriptors written to a work-queue portal, reads and writes the memory the
//! descriptor names by virtual address (shared virtual addressing, PASID), and
//! reports by writing a 64-byte completion record whose first byte, the
//! status, turns non-zero last. The layouts below follow
//! `include/uapi/linux/idxd.h` (`struct iax_hw_desc`,
//! `struct iax_completion_record`) and the AECS of
//! `drivers/crypto/intel/iaa/iaa_crypto.h` (`struct aecs_comp_table_record`)
//! field for field; the C structs are `__packed`, and every field here falls
//! on its natural alignment, so `repr(C)` adds no padding and the compile-time
//! assertions at the bottom hold the offsets to the header's. The alignment
//! added on top (64 for descriptor and record, 32 for the AECS) is what the
//! device requires of the memory, not part of the C type.
//!
//! The trade-off: the C bitfields (`pasid:20 rsvd:11 priv:1`,
//! `flags:24 opcode:8`) become plain `u32` words with accessors, which pins
//! the layout to little-endian bit allocation, as GCC does on x86-64, the only
//! place an IAA exists.

use std::mem::{align_of, offset_of, size_of};

// Descriptor flags (`IDXD_OP_FLAG_*`, include/uapi/linux/idxd.h).
/// Completion record address valid.
pub const IDXD_OP_FLAG_CRAV: u32 = 0x0004;
/// Request completion record.
pub const IDXD_OP_FLAG_RCR: u32 = 0x0008;
/// Request completion interrupt (unused here: we poll).
pub const IDXD_OP_FLAG_RCI: u32 = 0x0010;
/// Block on fault: left clear, as iaa_crypto does, so that a fault ends the
/// descriptor with a page-fault status instead of stalling the queue.
pub const IDXD_OP_FLAG_BOF: u32 = 0x0002;
/// Cache control: write the destination into the cache.
pub const IDXD_OP_FLAG_CC: u32 = 0x0100;
/// IAA: source 2 is an AECS (Analytics Engine Configuration and State) to read.
pub const IDXD_OP_FLAG_RD_SRC2_AECS: u32 = 0x01_0000;

// Opcodes (`enum iax_opcode`, include/uapi/linux/idxd.h).
/// No operation: completes at once, touching no memory but the record.
pub const IAX_OPCODE_NOOP: u8 = 0x00;
/// Inflate the raw deflate stream at source 1 into the destination.
pub const IAX_OPCODE_DECOMPRESS: u8 = 0x42;
/// Deflate source 1 into the destination with the Huffman codes of the AECS
/// at source 2.
pub const IAX_OPCODE_COMPRESS: u8 = 0x43;

// Completion status (`enum iax_completion_status`, include/uapi/linux/idxd.h,
// and iaa_crypto.h). Compare against `status & DSA_COMP_STATUS_MASK`: bit 7
// says whether a faulting access was a write.
/// No status yet: the descriptor is still running (records are zeroed
/// before submission, so this is what a poll sees until the device writes).
pub const IAX_COMP_NONE: u8 = 0x00;
/// Done; `output_size` bytes were written to the destination.
pub const IAX_COMP_SUCCESS: u8 = 0x01;
/// A page fault with block-on-fault clear: the operation stopped part way
/// (`fault_addr`, `bytes_completed` say where). `enum iax_completion_status`
/// leaves 0x03 unnamed; it is `DSA_COMP_PAGE_FAULT_NOBOF` of the same header,
/// and the idxd devices share the status space.
pub const IAX_COMP_PAGE_FAULT_NOBOF: u8 = 0x03;
/// A page fault whose page request was answered "invalid".
pub const IAX_COMP_PAGE_FAULT_IR: u8 = 0x04;
/// An analytics error; `error_code` says which (`IAA_ANALYTICS_ERROR`).
pub const IAX_COMP_ANALYTICS_ERROR: u8 = 0x0a;
/// Decompression output overflowed `max_dst_size`
/// (`IAX_COMP_OUTBUF_OVERFLOW`, iaa_crypto's `IAA_ERROR_DECOMP_BUF_OVERFLOW`).
pub const IAX_COMP_OUTBUF_OVERFLOW: u8 = 0x0b;
/// The device does not implement the descriptor's opcode.
pub const IAX_COMP_BAD_OPCODE: u8 = 0x10;
/// The descriptor set flags the device refuses; `invalid_flags` says which.
pub const IAX_COMP_INVALID_FLAGS: u8 = 0x11;
/// The watchdog expired (`IAA_ERROR_WATCHDOG_EXPIRED`, iaa_crypto.h).
pub const IAA_ERROR_WATCHDOG_EXPIRED: u8 = 0x24;
/// `DSA_COMP_STATUS_MASK`: the status without the read/write-fault bit.
pub const DSA_COMP_STATUS_MASK: u8 = 0x7f;

/// `error_code` of an analytics error when compressed output did not fit
/// `max_dst_size` (`IAA_ERROR_COMP_BUF_OVERFLOW`, iaa_crypto.h).
pub const IAA_ERROR_COMP_BUF_OVERFLOW: u8 = 0x19;

// Compression and decompression flags (iaa_crypto.h), in the 16-bit
// `compr_flags`/`decompr_flags` union of the descriptor.
/// Compress: write every output bit at the end, the last partial byte
/// included, rather than hold a tail back for a following descriptor.
pub const IAA_COMP_FLUSH_OUTPUT: u16 = 1 << 1;
/// Compress: close the block with an end-of-block symbol, so the output is
/// a complete deflate stream.
pub const IAA_COMP_APPEND_EOB: u16 = 1 << 2;
/// `IAA_COMP_FLAGS`: what iaa_crypto sets for every compression.
pub const IAA_COMP_FLAGS: u16 = IAA_COMP_FLUSH_OUTPUT | IAA_COMP_APPEND_EOB;
/// Decompress: decode source 1 as deflate (iaa_crypto sets it for every
/// decompression).
pub const IAA_DECOMP_ENABLE: u16 = 1 << 0;
/// Decompress: write all output at the end, not only whole 8-byte words.
pub const IAA_DECOMP_FLUSH_OUTPUT: u16 = 1 << 1;
/// Decompress: report an error unless the stream ends at an end-of-block
/// symbol.
pub const IAA_DECOMP_CHECK_FOR_EOB: u16 = 1 << 2;
/// Decompress: stop at the end-of-block symbol, ignoring any bytes after it.
pub const IAA_DECOMP_STOP_ON_EOB: u16 = 1 << 3;
/// `IAA_DECOMP_FLAGS`: what iaa_crypto sets for every decompression.
pub const IAA_DECOMP_FLAGS: u16 =
    IAA_DECOMP_ENABLE | IAA_DECOMP_FLUSH_OUTPUT | IAA_DECOMP_CHECK_FOR_EOB | IAA_DECOMP_STOP_ON_EOB;

/// Flags of a compress descriptor (iaa_crypto's `iaa_compress()`): a
/// completion record at a valid address, the AECS read from source 2, the
/// output left in cache for the copy that follows.
pub const IAX_COMPRESS_FLAGS: u32 =
    IDXD_OP_FLAG_CRAV | IDXD_OP_FLAG_RCR | IDXD_OP_FLAG_RD_SRC2_AECS | IDXD_OP_FLAG_CC;
/// Flags of a decompress descriptor (iaa_crypto's `iaa_decompress()`).
pub const IAX_DECOMPRESS_FLAGS: u32 = IDXD_OP_FLAG_CRAV | IDXD_OP_FLAG_RCR | IDXD_OP_FLAG_CC;

/// The block header iaa_crypto's "fixed" mode preloads into the AECS output
/// accumulator: BFINAL = 1, BTYPE = 01 (fixed Huffman), 3 bits
/// (`FIXED_HDR | bfinal`, `FIXED_HDR_SIZE`, iaa_crypto_comp_fixed.c).
pub const FIXED_HDR: u8 = 0x2;
/// Bits of that header: BFINAL (1) and BTYPE (2).
pub const FIXED_HDR_SIZE: u32 = 3;

/// `struct iax_hw_desc`: one IAA descriptor, 64 bytes.
#[repr(C, align(64))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IaxHwDesc {
    /// `pasid:20, rsvd:11, priv:1`. Zero from user space: a dedicated WQ's
    /// PASID is set by the driver, ENQCMD fills it in for a shared WQ.
    pub pasid_priv: u32,
    /// `flags:24, opcode:8`: opcode in bits 31..24.
    pub flags_opcode: u32,
    /// Where the device writes the [`IaxCompletionRecord`] (64-byte aligned).
    pub completion_addr: u64,
    /// Virtual address of source 1: the page to compress, or the deflate
    /// stream to decompress.
    pub src1_addr: u64,
    /// Virtual address the device writes its output to.
    pub dst_addr: u64,
    /// Bytes of source 1.
    pub src1_size: u32,
    /// Interrupt handle for a completion interrupt (`IDXD_OP_FLAG_RCI`);
    /// zero, since we poll.
    pub int_handle: u16,
    /// `union { compr_flags; decompr_flags; }`.
    pub compr_flags: u16,
    /// Source 2: the AECS for compression.
    pub src2_addr: u64,
    /// Bytes the device may write at `dst_addr`; output beyond is an
    /// overflow error, never a write.
    pub max_dst_size: u32,
    /// Bytes of source 2 (the whole AECS for compression; zero otherwise).
    pub src2_size: u32,
    /// Flags of the analytics filter operations (scan, extract, ...); zero
    /// for compress and decompress.
    pub filter_flags: u32,
    /// Element count of a filter operation's input; zero for compress and
    /// decompress.
    pub num_inputs: u32,
}

impl IaxHwDesc {
    /// The opcode (bits 31..24 of the second word).
    pub fn opcode(&self) -> u8 {
        (self.flags_opcode >> 24) as u8
    }

    /// The 24 flag bits.
    pub fn flags(&self) -> u32 {
        self.flags_opcode & 0x00ff_ffff
    }

    /// Set the opcode and the 24 flag bits.
    pub fn set_opcode_flags(&mut self, opcode: u8, flags: u32) {
        debug_assert!(flags <= 0x00ff_ffff);
        self.flags_opcode = (u32::from(opcode) << 24) | (flags & 0x00ff_ffff);
    }

    /// The 64 bytes as the device reads them.
    pub fn to_bytes(&self) -> [u8; 64] {
        // SAFETY: IaxHwDesc is repr(C), 64 bytes, made only of integers with
        // no padding (checked below), so every byte is initialised.
        unsafe { std::mem::transmute_copy(self) }
    }
}

/// `struct iax_completion_record`: what the device writes back, 64 bytes.
/// `status` is written last; until it is non-zero nothing else is valid.
#[repr(C, align(64))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IaxCompletionRecord {
    /// `IAX_COMP_*` outcome, zero while running; bit 7 marks a fault on a
    /// write (mask with [`DSA_COMP_STATUS_MASK`]).
    pub status: u8,
    /// Which analytics error, when `status` is [`IAX_COMP_ANALYTICS_ERROR`]
    /// (e.g. [`IAA_ERROR_COMP_BUF_OVERFLOW`]).
    pub error_code: u8,
    /// Further detail of a page fault; not read here (any fault sends the
    /// page to software).
    pub fault_info: u8,
    /// Reserved.
    pub rsvd: u8,
    /// Source bytes processed before the operation stopped, after a fault.
    pub bytes_completed: u32,
    /// Virtual address whose access faulted.
    pub fault_addr: u64,
    /// The descriptor flags refused, when `status` is
    /// [`IAX_COMP_INVALID_FLAGS`].
    pub invalid_flags: u32,
    /// Reserved.
    pub rsvd2: u32,
    /// Bytes written to the destination.
    pub output_size: u32,
    /// Valid bits in the last byte written (deflate output need not end on
    /// a byte boundary).
    pub output_bits: u8,
    /// Reserved.
    pub rsvd3: u8,
    /// 16-bit XOR checksum of the uncompressed data.
    pub xor_csum: u16,
    /// CRC-32 of the uncompressed data (compress and decompress alike).
    pub crc: u32,
    /// Filter operations' smallest (or first) output value; unused here.
    pub min: u32,
    /// Filter operations' largest (or last) output value; unused here.
    pub max: u32,
    /// Filter operations' sum of output values; unused here.
    pub sum: u32,
    /// Reserved.
    pub rsvd4: [u64; 2],
}

/// Number of literal/length symbols in an AECS table (0..=285).
pub const AECS_LL_SYMS: usize = 286;
/// Number of distance symbols in an AECS table (0..=29).
pub const AECS_D_SYMS: usize = 30;

/// `struct aecs_comp_table_record` (iaa_crypto.h): the compression state
/// source 2 points at. In "fixed" mode it holds the RFC 1951 fixed Huffman
/// codes and, in the output accumulator, the 3-bit block header the output
/// must start with. Each table entry is `(code length << 15) | code`, the
/// code most significant bit first, as iaa_crypto_comp_fixed.c lists them.
#[repr(C, align(32))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AecsCompTableRecord {
    /// CRC-32 carried in from earlier data of the stream; zero, as every
    /// page is a stream of its own.
    pub crc: u32,
    /// XOR checksum carried in likewise; zero.
    pub xor_checksum: u32,
    /// Reserved.
    pub reserved0: [u32; 5],
    /// How many bits of `output_accum` are valid ([`FIXED_HDR_SIZE`] in
    /// fixed mode).
    pub num_output_accum_bits: u32,
    /// Bits the device emits ahead of its own output, least significant
    /// first: in fixed mode, the block header.
    pub output_accum: [u8; 256],
    /// Literal/length codes, indexed by symbol, packed as the type says.
    pub ll_sym: [u32; AECS_LL_SYMS],
    /// Reserved.
    pub reserved1: u32,
    /// Reserved.
    pub reserved2: u32,
    /// Distance codes, indexed by symbol, packed as `ll_sym`.
    pub d_sym: [u32; AECS_D_SYMS],
    /// Reserved; brings the record to 1568 bytes, a multiple of 32.
    pub reserved_padding: [u32; 2],
}

impl AecsCompTableRecord {
    /// The AECS of iaa_crypto's "fixed" mode (`init_fixed_mode()`): fixed
    /// Huffman tables, and the header BFINAL=1 BTYPE=01 preloaded.
    pub fn fixed() -> Self {
        let mut output_accum = [0u8; 256];
        output_accum[0] = FIXED_HDR | 1;
        AecsCompTableRecord {
            crc: 0,
            xor_checksum: 0,
            reserved0: [0; 5],
            num_output_accum_bits: FIXED_HDR_SIZE,
            output_accum,
            ll_sym: FIXED_LL_SYM,
            reserved1: 0,
            reserved2: 0,
            d_sym: FIXED_D_SYM,
            reserved_padding: [0; 2],
        }
    }
}

/// `fixed_ll_sym` of iaa_crypto_comp_fixed.c, computed from RFC 1951 3.2.6:
/// literals 0..=143 take 8 bits from 0x30, 144..=255 take 9 bits from 0x190,
/// 256..=279 take 7 bits from 0, 280..=287 take 8 bits from 0xc0.
pub const FIXED_LL_SYM: [u32; AECS_LL_SYMS] = {
    let mut t = [0u32; AECS_LL_SYMS];
    let mut s = 0;
    while s < AECS_LL_SYMS {
        let (len, code) = match s {
            0..=143 => (8u32, 0x30 + s as u32),
            144..=255 => (9, 0x190 + (s as u32 - 144)),
            256..=279 => (7, s as u32 - 256),
            _ => (8, 0xc0 + (s as u32 - 280)),
        };
        t[s] = (len << 15) | code;
        s += 1;
    }
    t
};

/// `fixed_d_sym` of iaa_crypto_comp_fixed.c: distance codes are 5 bits.
pub const FIXED_D_SYM: [u32; AECS_D_SYMS] = {
    let mut t = [0u32; AECS_D_SYMS];
    let mut s = 0;
    while s < AECS_D_SYMS {
        t[s] = (5 << 15) | s as u32;
        s += 1;
    }
    t
};

// The header's layout, checked at compile time.
const _: () = {
    assert!(size_of::<IaxHwDesc>() == 64);
    assert!(align_of::<IaxHwDesc>() == 64);
    assert!(offset_of!(IaxHwDesc, pasid_priv) == 0);
    assert!(offset_of!(IaxHwDesc, flags_opcode) == 4);
    assert!(offset_of!(IaxHwDesc, completion_addr) == 8);
    assert!(offset_of!(IaxHwDesc, src1_addr) == 16);
    assert!(offset_of!(IaxHwDesc, dst_addr) == 24);
    assert!(offset_of!(IaxHwDesc, src1_size) == 32);
    assert!(offset_of!(IaxHwDesc, int_handle) == 36);
    assert!(offset_of!(IaxHwDesc, compr_flags) == 38);
    assert!(offset_of!(IaxHwDesc, src2_addr) == 40);
    assert!(offset_of!(IaxHwDesc, max_dst_size) == 48);
    assert!(offset_of!(IaxHwDesc, src2_size) == 52);
    assert!(offset_of!(IaxHwDesc, filter_flags) == 56);
    assert!(offset_of!(IaxHwDesc, num_inputs) == 60);

    assert!(size_of::<IaxCompletionRecord>() == 64);
    assert!(align_of::<IaxCompletionRecord>() == 64);
    assert!(offset_of!(IaxCompletionRecord, status) == 0);
    assert!(offset_of!(IaxCompletionRecord, error_code) == 1);
    assert!(offset_of!(IaxCompletionRecord, fault_info) == 2);
    assert!(offset_of!(IaxCompletionRecord, bytes_completed) == 4);
    assert!(offset_of!(IaxCompletionRecord, fault_addr) == 8);
    assert!(offset_of!(IaxCompletionRecord, invalid_flags) == 16);
    assert!(offset_of!(IaxCompletionRecord, output_size) == 24);
    assert!(offset_of!(IaxCompletionRecord, output_bits) == 28);
    assert!(offset_of!(IaxCompletionRecord, xor_csum) == 30);
    assert!(offset_of!(IaxCompletionRecord, crc) == 32);
    assert!(offset_of!(IaxCompletionRecord, min) == 36);
    assert!(offset_of!(IaxCompletionRecord, max) == 40);
    assert!(offset_of!(IaxCompletionRecord, sum) == 44);
    assert!(offset_of!(IaxCompletionRecord, rsvd4) == 48);

    // 4 + 4 + 20 + 4 + 256 + 286*4 + 4 + 4 + 30*4 + 8 = 1568 = 49 * 32.
    assert!(size_of::<AecsCompTableRecord>() == 1568);
    assert!(offset_of!(AecsCompTableRecord, num_output_accum_bits) == 28);
    assert!(offset_of!(AecsCompTableRecord, output_accum) == 32);
    assert!(offset_of!(AecsCompTableRecord, ll_sym) == 288);
    assert!(offset_of!(AecsCompTableRecord, d_sym) == 1440);
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_tables_match_iaa_crypto() {
        // Spot values of fixed_ll_sym / fixed_d_sym in iaa_crypto_comp_fixed.c.
        assert_eq!(FIXED_LL_SYM[0], 0x40030);
        assert_eq!(FIXED_LL_SYM[143], 0x400BF);
        assert_eq!(FIXED_LL_SYM[144], 0x48190);
        assert_eq!(FIXED_LL_SYM[255], 0x481FF);
        assert_eq!(FIXED_LL_SYM[256], 0x38000);
        assert_eq!(FIXED_LL_SYM[279], 0x38017);
        assert_eq!(FIXED_LL_SYM[280], 0x400C0);
        assert_eq!(FIXED_LL_SYM[285], 0x400C5);
        assert_eq!(FIXED_D_SYM[0], 0x28000);
        assert_eq!(FIXED_D_SYM[29], 0x2801D);
        let aecs = AecsCompTableRecord::fixed();
        assert_eq!(aecs.output_accum[0], 0x3);
        assert_eq!(aecs.num_output_accum_bits, 3);
    }

    #[test]
    fn opcode_and_flags_share_a_word_as_the_bitfields_do() {
        let mut d = IaxHwDesc::default();
        d.set_opcode_flags(IAX_OPCODE_COMPRESS, IAX_COMPRESS_FLAGS);
        assert_eq!(d.opcode(), 0x43);
        assert_eq!(d.flags(), 0x01_010c);
        let b = d.to_bytes();
        // flags:24 in the low bits, opcode:8 in the top byte (little-endian).
        assert_eq!(&b[4..8], &[0x0c, 0x01, 0x01, 0x43]);
    }
}
