//! TEMPORARY stub until the pcap filter compiler lands (same contract).

pub struct Insn {
    pub code: u8,
    pub dst: u8,
    pub src: u8,
    pub off: i16,
    pub imm: i32,
}

impl Insn {
    pub fn to_bytes(&self) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[0] = self.code;
        b[1] = (self.dst & 0xf) | (self.src << 4);
        b[2..4].copy_from_slice(&self.off.to_le_bytes());
        b[4..8].copy_from_slice(&self.imm.to_le_bytes());
        b
    }
}

pub fn match_all() -> Vec<Insn> {
    vec![
        Insn { code: 0xb7, dst: 0, src: 0, off: 0, imm: 1 },
        Insn { code: 0x95, dst: 0, src: 0, off: 0, imm: 0 },
    ]
}

/// TEMPORARY: compiles for both link types.
pub fn compile_pair(_expr: &str, _snaplen: u32) -> Result<(Vec<Insn>, Vec<Insn>), String> {
    Err("pcap filters are not available in this build".into())
}
