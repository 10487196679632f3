//! Kernel memory made up for a test: one image at `base` holding an skb and the objects its
//! pointers lead to. Every executor reads the same bytes: the interpreter and rbpf's helper
//! from `image`, the kernel test from a map value the image is copied into (so `base` is then
//! that value's kernel address).
//!
//! Pointers in the image are valid (to another object of the image), NULL, or wild: a
//! non-canonical address, which every executor fails to read (the kernel's
//! `copy_from_kernel_nofault` refuses it). The image ends with room enough that no read the
//! tests generate runs off its end, where the kernel would read other memory.

use super::rng::Rng;
use crate::btf::ctype::{CKind, TypeId};
use crate::filter::skb_expr::Layout;

/// A kernel-looking address for images that live outside the kernel.
pub const HOST_BASE: u64 = 0xffff_8880_1234_0000;
/// Non-canonical on x86-64: bit 47 differs from bits 48–63.
pub const WILD: u64 = 0xdead_0000_0000_0000;
/// Where the first object starts; the kernel harness writes the base address before it.
const FIRST: usize = 64;
/// Names some char arrays get, so that string comparisons sometimes match.
pub const NAMES: &[&[u8]] = &[b"eth0", b"lo", b"veth0", b"a-sixteen-bytes!"];
/// Values integers get more often than others, so that comparisons sometimes hold.
pub const VALUES: &[u64] = &[0, 1, 2, 3, 4, 5, 0x10, 100, 0xff, 0x800, 0x8000, u64::MAX, 0x8000_0000, 1 << 63];

#[derive(Clone)]
pub struct World {
    pub base: u64,
    /// Offset of the skb in `image`.
    pub skb: usize,
    pub image: Vec<u8>,
    /// Offsets in `image` of the pointers to objects of the image, which move with `base`.
    pointers: Vec<usize>,
}

impl World {
    /// An empty skb of `size` bytes (and room after it) at [`HOST_BASE`], for tests that write
    /// their own fields with [`World::put`] and [`World::point`].
    pub fn empty(size: usize) -> Self {
        Self { base: HOST_BASE, skb: FIRST, image: vec![0; FIRST + size + 256], pointers: Vec::new() }
    }

    /// Writes `bytes` at `at` bytes into the image, growing it (with room after) as needed.
    pub fn put(&mut self, at: usize, bytes: &[u8]) {
        if self.image.len() < at + bytes.len() + 256 {
            self.image.resize(at + bytes.len() + 256, 0);
        }
        self.image[at..at + bytes.len()].copy_from_slice(bytes);
    }

    /// Writes at `at` a pointer to offset `to` of the image.
    pub fn point(&mut self, at: usize, to: usize) {
        self.put(at, &(self.base + to as u64).to_le_bytes());
        self.pointers.push(at);
    }

    /// `len` bytes at `addr`, when they lie in the image.
    pub fn read(&self, addr: u64, len: usize) -> Option<&[u8]> {
        let start = usize::try_from(addr.checked_sub(self.base)?).ok()?;
        self.image.get(start..start.checked_add(len)?)
    }

    pub fn skb_addr(&self) -> u64 {
        self.base + self.skb as u64
    }

    /// The same world at another address.
    pub fn rebase(&mut self, base: u64) {
        for &at in &self.pointers {
            let old = u64::from_le_bytes(self.image[at..at + 8].try_into().unwrap());
            self.image[at..at + 8].copy_from_slice(&(old - self.base + base).to_le_bytes());
        }
        self.base = base;
    }

    /// A world of the layout's skb with random contents and at most `max_objects` objects.
    pub fn random(layout: &impl Layout, rng: &mut Rng, max_objects: usize) -> Self {
        let root = layout.root().expect("a root struct");
        let mut world = Self { base: HOST_BASE, skb: 0, image: vec![0; FIRST], pointers: Vec::new() };
        let mut largest = 64;
        world.skb = world.alloc(layout, Some(root), rng, &mut largest);
        let mut work = vec![(root, world.skb, 0usize)];
        let mut objects = 1;
        while let Some((ty, at, depth)) = work.pop() {
            let mut slots = Vec::new();
            members(layout, ty, at, &mut slots, 0);
            // Pointers last, so that no int of a union overwrites one; one pointer per place.
            slots.sort_by_key(|s| matches!(s, Slot::Ptr { .. }));
            let mut taken: Vec<usize> = Vec::new();
            for slot in slots {
                match slot {
                    Slot::Int { at, size } if rng.below(3) != 0 => {
                        let v = rng.pick(VALUES).to_le_bytes();
                        world.image[at..at + size].copy_from_slice(&v[..size]);
                    }
                    Slot::Chars { at, len } if rng.below(2) == 0 => {
                        let name = rng.pick(NAMES);
                        let n = name.len().min(len);
                        world.image[at..at + n].copy_from_slice(&name[..n]);
                        if n < len {
                            world.image[at + n] = 0;
                        }
                    }
                    Slot::Ptr { at, target } if !taken.iter().any(|&t| t.abs_diff(at) < 8) => {
                        taken.push(at);
                        let value = match rng.below(8) {
                            0 | 1 => 0,
                            2 => WILD | (rng.next() & 0xffff_ffff),
                            _ if objects < max_objects && depth < 3 => {
                                objects += 1;
                                let object = world.alloc(layout, target, rng, &mut largest);
                                if let Some(target) = target {
                                    work.push((target, object, depth + 1));
                                }
                                world.pointers.push(at);
                                world.base + object as u64
                            }
                            _ => 0,
                        };
                        world.image[at..at + 8].copy_from_slice(&value.to_le_bytes());
                    }
                    _ => {}
                }
            }
        }
        // Room for pointer indexing (`p[1]`) past the last object.
        world.grow(2 * largest + 64, rng);
        world
    }

    /// Room for an object of type `ty` (64 bytes when it has no size), filled at random.
    fn alloc(&mut self, layout: &impl Layout, ty: Option<TypeId>, rng: &mut Rng, largest: &mut usize) -> usize {
        let size = ty.and_then(|t| size_of(layout, t)).unwrap_or(64).max(8) as usize;
        *largest = (*largest).max(size);
        let at = self.image.len().next_multiple_of(8);
        self.image.resize(at, 0);
        self.grow(size, rng);
        at
    }

    fn grow(&mut self, by: usize, rng: &mut Rng) {
        let start = self.image.len();
        self.image.extend((0..by).map(|_| rng.next() as u8));
        debug_assert_eq!(self.image.len(), start + by);
    }
}

/// What to write at one place of an object.
enum Slot {
    Int { at: usize, size: usize },
    Chars { at: usize, len: usize },
    Ptr { at: usize, target: Option<TypeId> },
}

fn size_of(layout: &impl Layout, ty: TypeId) -> Option<u32> {
    match layout.ctype(ty)?.kind {
        CKind::Int { size, .. } | CKind::Enum { size, .. } => Some(size),
        CKind::Ptr { .. } => Some(8),
        CKind::Struct { size, .. } | CKind::Union { size, .. } => Some(size),
        CKind::Array { elem, len } => size_of(layout, elem)?.checked_mul(len),
        CKind::Other => None,
    }
}

/// The ints, char arrays and pointers of an object of type `ty` at `at`, nested ones included.
fn members(layout: &impl Layout, ty: TypeId, at: usize, out: &mut Vec<Slot>, depth: usize) {
    let Some(ctype) = layout.ctype(ty) else { return };
    match ctype.kind {
        CKind::Int { size, .. } | CKind::Enum { size, .. } if matches!(size, 1 | 2 | 4 | 8) => {
            out.push(Slot::Int { at, size: size as usize })
        }
        CKind::Ptr { target } => out.push(Slot::Ptr { at, target }),
        CKind::Array { elem, len } => {
            let elem_size = size_of(layout, elem).unwrap_or(0) as usize;
            if elem_size == 1 {
                out.push(Slot::Chars { at, len: len as usize });
            } else if depth < 4 {
                for i in 0..(len as usize).min(4) {
                    members(layout, elem, at + i * elem_size, out, depth + 1);
                }
            }
        }
        CKind::Struct { members: fields, .. } | CKind::Union { members: fields, .. } if depth < 4 => {
            for f in fields.iter().filter(|f| f.bitfield_bits == 0) {
                members(layout, f.ty, at + (f.bit_offset / 8) as usize, out, depth + 1);
            }
        }
        _ => {}
    }
}
