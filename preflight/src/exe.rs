//! Facts about the running executable itself.
//!
//! Whether it is statically linked decides two things: libclang must not be loaded into a
//! static executable (glibc's static dlopen maps a second libc and the shared libLLVM beside
//! the static one, and the first libclang call crashes with SIGSEGV), and only a static
//! executable can be put as it is into the bare initramfs `preflight gate` boots.

/// Whether the running executable has no ELF interpreter (`PT_INTERP`): a static or
/// static-pie executable. Read from the process's own program headers, which the kernel passes
/// in the auxiliary vector, so the answer holds for whatever build is running.
pub fn is_statically_linked() -> bool {
    const PT_INTERP: u32 = 3;
    // SAFETY: getauxval has no preconditions; it returns 0 for an entry the kernel did not pass.
    let (phdr, phnum, phent) = unsafe {
        (
            libc::getauxval(libc::AT_PHDR) as usize,
            libc::getauxval(libc::AT_PHNUM) as usize,
            libc::getauxval(libc::AT_PHENT) as usize,
        )
    };
    if phdr == 0 || phnum == 0 || phent < std::mem::size_of::<libc::Elf64_Phdr>() {
        // Cannot tell: answer "static", the side on which nothing is dlopened.
        return true;
    }
    let has_interpreter = (0..phnum).any(|i| {
        // SAFETY: AT_PHDR points at AT_PHNUM program headers of AT_PHENT bytes each, mapped
        // read-only for the life of the process (part of the executable's first segment);
        // AT_PHENT is at least the size of Elf64_Phdr (checked above).
        let header = unsafe { &*((phdr + i * phent) as *const libc::Elf64_Phdr) };
        header.p_type == PT_INTERP
    });
    !has_interpreter
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_test_binary_is_dynamically_linked() {
        // cargo links test binaries against the shared glibc; the static case is checked on the
        // shipped artifact itself (scripts/dist-check.sh: its compile evidence names the
        // reason libclang was not loaded).
        assert!(!is_statically_linked());
    }
}
