"""The compiled kernels' object code placed in memory and linked by hand, on
Linux x86-64, so that a warm process needs no llvmlite: importing it (its
178 MB library) costs 30-45 ms, a third of the start-up of a one-image run.

What native.py compiles is a relocatable ELF object of a known, simple shape:
LLVM's large code model, so that every reference is an absolute 64-bit address
(R_X86_64_64) and only the unwind tables hold PC-relative ones. This module
handles that shape and refuses anything else (Unloadable), for which native.py
falls back to llvmlite's loader: writable or thread-local data, common symbols,
relocation kinds other than the few below, anything out of bounds.

Sections are copied into fresh anonymous pages, code first, then read-only
data; references are resolved (the object's own symbols, else this process's:
the C library's, Python's; numba's runtime helpers, which only its error paths
name, to abort() as native.py does for llvmlite); then the code pages become
read and execute only, the data pages read only. The pages are never unmapped:
the kernels live as long as the process.
"""
from __future__ import annotations

import ctypes
import mmap
import os
import struct
import sys

_HEADER = struct.Struct("<16sHHIQQQIHHHHHH")
_SECTION = struct.Struct("<IIQQQQIIQQ")  # name type flags addr offset size link info addralign entsize
_SYMBOL = struct.Struct("<IBBHQQ")  # name info other shndx value size
_RELA = struct.Struct("<QQq")  # offset info addend

SHT_SYMTAB, SHT_STRTAB, SHT_RELA, SHT_NOBITS, SHT_REL = 2, 3, 4, 8, 9
SHT_X86_64_UNWIND = 0x70000001
SHF_WRITE, SHF_ALLOC, SHF_EXECINSTR, SHF_TLS = 0x1, 0x2, 0x4, 0x400
SHN_UNDEF, SHN_LORESERVE, SHN_ABS, SHN_COMMON = 0, 0xFF00, 0xFFF1, 0xFFF2
# relocation kinds: (bytes written, signed, PC-relative)
_KINDS = {1: (8, False, False),   # R_X86_64_64: S + A
          2: (4, True, True),     # R_X86_64_PC32: S + A - P
          4: (4, True, True),     # R_X86_64_PLT32: the same, no PLT needed when it fits
          10: (4, False, False),  # R_X86_64_32
          11: (4, True, False),   # R_X86_64_32S
          24: (8, True, True)}    # R_X86_64_PC64

PROT_READ, PROT_WRITE, PROT_EXEC = 1, 2, 4
MAP_PRIVATE, MAP_ANONYMOUS = 0x02, 0x20


class Unloadable(Exception):
    """This object is not of the shape this loader takes (llvmlite's then)."""


def supported() -> bool:
    """Whether this process can use the loader: Linux on x86-64."""
    return sys.platform.startswith("linux") and os.uname().machine == "x86_64"


class Image:
    """An object's code in memory: `address(symbol)` of its defined symbols."""

    def __init__(self, base: int, size: int, symbols: dict):
        self.base, self.size, self._symbols = base, size, symbols

    def address(self, name: str) -> int | None:
        return self._symbols.get(name)


def _libc():
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long)
    libc.mprotect.restype = ctypes.c_int
    libc.mprotect.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    libc.munmap.restype = ctypes.c_int
    libc.munmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
    return libc


def _cut(data: bytes, offset: int, size: int, what: str) -> bytes:
    if offset < 0 or size < 0 or offset + size > len(data):
        raise Unloadable(f"{what} lies outside the object")
    return data[offset:offset + size]


def _name(strings: bytes, offset: int) -> str:
    end = strings.find(b"\0", offset)
    if offset >= len(strings) or end < 0:
        raise Unloadable("a name lies outside its string table")
    return strings[offset:end].decode("ascii", "replace")


def load(code: bytes, resolve) -> Image:
    """Place and link the object `code`; resolve(name) gives the address of a
    symbol it does not define. Raises Unloadable (nothing is left mapped)."""
    if len(code) < _HEADER.size:
        raise Unloadable("too short for an ELF header")
    (ident, e_type, machine, _, _, _, shoff, _, _, _, _, shentsize, shnum, _) = _HEADER.unpack_from(code)
    if ident[:4] != b"\x7fELF" or ident[4] != 2 or ident[5] != 1 or e_type != 1 or machine != 62:
        raise Unloadable("not a 64-bit little-endian x86-64 relocatable object")
    if shentsize != _SECTION.size or not 0 < shnum < 1 << 12:
        raise Unloadable("unexpected section headers")
    sections = [_SECTION.unpack(_cut(code, shoff + i * shentsize, shentsize, "a section header"))
                for i in range(shnum)]

    # where each loaded section goes: code pages, then read-only data pages
    page = mmap.PAGESIZE
    place, size = {}, 0
    for executable in (True, False):
        for index, (_, kind, flags, _, _, length, _, _, align, _) in enumerate(sections):
            if not flags & SHF_ALLOC or kind == SHT_X86_64_UNWIND or bool(flags & SHF_EXECINSTR) != executable:
                continue  # unwind tables: nothing unwinds through the kernels (ctypes calls them)
            if flags & (SHF_WRITE | SHF_TLS) or kind == SHT_NOBITS:
                raise Unloadable("writable or thread-local data")
            align = max(1, align)
            if align & (align - 1) or align > page:
                raise Unloadable("an unexpected alignment")
            size = -(-size // align) * align
            place[index] = size
            size += length
        if executable:
            code_size = size = -(-size // page) * page
    total = max(page, -(-size // page) * page)

    symbols, defined = _symbols(code, sections)
    libc = _libc()
    base = libc.mmap(None, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
    if base in (None, ctypes.c_void_p(-1).value):
        raise Unloadable(f"cannot map memory: {ctypes.get_errno()}")
    try:
        for index, offset in place.items():
            _, kind, _, _, start, length = sections[index][:6]
            ctypes.memmove(base + offset, _cut(code, start, length, "a section"), length)
        addresses = [_address(sym, base, place, resolve) for sym in symbols]
        for index, (_, kind, _, _, start, length, link, target, _, entsize) in enumerate(sections):
            if kind == SHT_REL:
                raise Unloadable("REL relocations")
            if kind != SHT_RELA or target not in place:
                continue
            if entsize != _RELA.size or sections[link][1] != SHT_SYMTAB:
                raise Unloadable("unexpected relocations")
            _relocate(base, place[target], sections[target][5], addresses,
                      _cut(code, start, length, "relocations"))
        if (code_size and libc.mprotect(base, code_size, PROT_READ | PROT_EXEC)) or \
                (total > code_size and libc.mprotect(base + code_size, total - code_size, PROT_READ)):
            raise Unloadable(f"cannot protect the code: {ctypes.get_errno()}")
    except BaseException:
        libc.munmap(base, total)
        raise
    return Image(base, total, {name: addresses[i] for name, i in defined.items()})


def _symbols(code: bytes, sections):
    """[(name, shndx, value)] of the symbol table, and {name: index} of the
    global and weak symbols the object defines."""
    tables = [s for s in sections if s[1] == SHT_SYMTAB]
    if len(tables) != 1:
        raise Unloadable("not one symbol table")
    _, _, _, _, start, length, link, _, _, entsize = tables[0]
    if entsize != _SYMBOL.size or not 0 <= link < len(sections) or sections[link][1] != SHT_STRTAB:
        raise Unloadable("an unexpected symbol table")
    strings = _cut(code, sections[link][4], sections[link][5], "the symbol names")
    symbols, defined = [], {}
    for number, (name, info, _, shndx, value, _) in enumerate(_SYMBOL.iter_unpack(
            _cut(code, start, length - length % entsize, "the symbol table"))):
        text = _name(strings, name)
        symbols.append((text, shndx, value, info & 0xF))
        if info >> 4 in (1, 2) and shndx != SHN_UNDEF:  # global, weak
            defined[text] = number
    return symbols, defined


def _address(symbol, base: int, place: dict, resolve) -> int | None:
    """A symbol's address; None for one no relocation may name (checked there)."""
    name, shndx, value, _ = symbol
    if shndx == SHN_UNDEF:
        return resolve(name) if name else 0
    if shndx == SHN_ABS:
        return value
    if shndx >= SHN_LORESERVE or shndx not in place:
        return None  # common, or in a section not loaded (unwind tables)
    return base + place[shndx] + value


def _relocate(base: int, offset: int, length: int, addresses, entries: bytes) -> None:
    for where, info, addend in _RELA.iter_unpack(entries):
        symbol, kind = info >> 32, info & 0xFFFFFFFF
        if kind not in _KINDS:
            raise Unloadable(f"relocation kind {kind}")
        width, signed, relative = _KINDS[kind]
        if symbol >= len(addresses) or addresses[symbol] is None:
            raise Unloadable("a relocation names a symbol that is not loaded")
        if where + width > length:
            raise Unloadable("a relocation outside its section")
        at = base + offset + where
        value = addresses[symbol] + addend - (at if relative else 0)
        bits = 8 * width
        low, high = (-(1 << bits - 1), (1 << bits - 1) - 1) if signed else (0, (1 << bits) - 1)
        if width == 8:
            value &= (1 << 64) - 1
        elif not low <= value <= high:
            raise Unloadable("a 32-bit relocation out of reach")
        ctypes.memmove(at, (value & ((1 << bits) - 1)).to_bytes(width, "little"), width)
