//! One eBPF instruction slot (`struct bpf_insn`, 8 bytes, little-endian objects only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn(pub [u8; 8]);

/// `BPF_LD | BPF_IMM | BPF_DW`: the one instruction that takes two slots.
pub const LD_IMM64: u8 = 0x18;
/// `BPF_JMP | BPF_CALL`.
pub const CALL: u8 = 0x85;
/// `src_reg` of a call: a BPF-to-BPF call (BPF_PSEUDO_CALL), a kfunc (BPF_PSEUDO_KFUNC_CALL).
pub const PSEUDO_CALL: u8 = 1;
pub const PSEUDO_KFUNC_CALL: u8 = 2;
/// `src_reg` of an `ld_imm64`: map fd, pointer into a map value, function address.
pub const PSEUDO_MAP_FD: u8 = 1;
pub const PSEUDO_MAP_VALUE: u8 = 2;
pub const PSEUDO_FUNC: u8 = 4;
/// Helper number of `bpf_tail_call`.
pub const HELPER_TAIL_CALL: i32 = 12;

impl Insn {
    pub fn from_bytes(b: &[u8]) -> Self {
        let mut a = [0; 8];
        a.copy_from_slice(&b[..8]);
        Self(a)
    }
    pub fn code(&self) -> u8 {
        self.0[0]
    }
    pub fn dst(&self) -> u8 {
        self.0[1] & 0x0f
    }
    pub fn src(&self) -> u8 {
        self.0[1] >> 4
    }
    pub fn imm(&self) -> i32 {
        i32::from_le_bytes([self.0[4], self.0[5], self.0[6], self.0[7]])
    }
    pub fn set_src(&mut self, src: u8) {
        self.0[1] = (self.0[1] & 0x0f) | (src << 4);
    }
    pub fn set_imm(&mut self, imm: i32) {
        self.0[4..8].copy_from_slice(&imm.to_le_bytes());
    }
    pub fn is_ld_imm64(&self) -> bool {
        self.code() == LD_IMM64
    }
    /// A BPF-to-BPF call.
    pub fn is_pseudo_call(&self) -> bool {
        self.code() == CALL && self.src() == PSEUDO_CALL
    }
    /// A call to a kernel helper; its number.
    pub fn helper(&self) -> Option<i32> {
        (self.code() == CALL && self.src() == 0).then(|| self.imm())
    }
    /// `r3 = K` (64- or 32-bit move of an immediate): the slot of a static tail call.
    pub fn mov_imm_to(&self, reg: u8) -> Option<i32> {
        matches!(self.code(), 0xb7 | 0xb4).then_some(())?;
        (self.dst() == reg).then(|| self.imm())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_read_and_write_in_place() {
        let mut i = Insn([LD_IMM64, 0x12, 0, 0, 0xff, 0xff, 0xff, 0xff]);
        assert_eq!((i.dst(), i.src(), i.imm()), (2, 1, -1));
        i.set_src(PSEUDO_MAP_VALUE);
        i.set_imm(7);
        assert_eq!((i.dst(), i.src(), i.imm()), (2, 2, 7));
        assert_eq!(Insn([0xb7, 0x03, 0, 0, 5, 0, 0, 0]).mov_imm_to(3), Some(5));
        assert_eq!(Insn([0xb7, 0x02, 0, 0, 5, 0, 0, 0]).mov_imm_to(3), None);
        assert_eq!(Insn([CALL, 0, 0, 0, 12, 0, 0, 0]).helper(), Some(12));
        assert!(Insn([CALL, 0x10, 0, 0, 3, 0, 0, 0]).is_pseudo_call());
    }
}
