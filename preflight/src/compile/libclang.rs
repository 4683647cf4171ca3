//! Structured diagnostics from libclang, loaded at run time through clang-sys: when a compile
//! fails or warns, the same translation unit is parsed again in-process with the same flags and
//! clang's diagnostics are read as values (severity, message, location, `-W` option, child
//! notes) instead of being parsed out of its text. The libclang must have the same major as the
//! clang that compiled (warnings and messages change between majors); when none loads, the text
//! parser ([`super::diag`]) is used and the report says so.
//!
//! libclang runs the front end only: errors from code generation or from llc (the 1.14
//! pipeline) exist only in clang's text output, so a failed compile whose libclang parse shows
//! no error keeps the text diagnostics.
//!
//! Threads: clang-sys keeps the loaded library in a thread-local (`clang_sys::load` /
//! `set_library`) and finds it through `LIBCLANG_PATH`, a process-wide variable. Every use here
//! holds [`LIBRARIES`]: loading, the environment variable and the parse are serialised, and the
//! library is installed on the calling thread only for the duration of one parse.
use std::{
    collections::BTreeMap,
    ffi::{CStr, CString, c_char, c_int, c_uint},
    path::{Path, PathBuf},
    ptr,
    sync::{Arc, Mutex},
};

use clang_sys::{
    CXClientData, CXDiagnostic, CXDiagnostic_Error, CXDiagnostic_Fatal, CXDiagnostic_Ignored,
    CXDiagnostic_Note, CXDiagnostic_Warning, CXError_Crashed, CXError_InvalidArguments,
    CXError_Success, CXFile, CXIndex, CXSourceLocation, CXString, CXTranslationUnit,
    CXTranslationUnit_None, SharedLibrary,
};
use serde::{Serialize, Serializer};

use super::{
    diag::{Diagnostic, Location, Severity},
    runner::Job,
    toolchain::{Toolchain, parse_version},
};

/// Which libclang to use (`preflight compile --libclang`, `PREFLIGHT_LIBCLANG`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Mode {
    /// The libclang of the compiling clang's major, found next to it or in the LLVM dirs.
    #[default]
    Auto,
    /// Text diagnostics only.
    Off,
    /// This library file; used only when its major matches the clang's.
    Library(PathBuf),
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "off" => Ok(Self::Off),
            "" => Err("expected auto, off or a libclang path".into()),
            path => Ok(Self::Library(PathBuf::from(path))),
        }
    }
}

/// Where a program's diagnostics came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Libclang(u32),
    Text,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Libclang(major) => write!(f, "libclang {major}"),
            Self::Text => f.write_str("clang text output"),
        }
    }
}

impl Serialize for Source {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A libclang that loaded and reported the wanted major.
#[derive(Debug, Clone)]
pub struct Library {
    pub path: PathBuf,
    pub major: u32,
    shared: Arc<SharedLibrary>,
}

/// Loaded libraries by canonical path, and failed loads with their reason. The lock also
/// serialises every libclang call (see the module comment).
static LIBRARIES: Mutex<BTreeMap<PathBuf, Result<Arc<SharedLibrary>, String>>> =
    Mutex::new(BTreeMap::new());

/// The files that can be the libclang of clang `major`: next to the clang binary's LLVM
/// (`/usr/lib/llvm-NN/bin/clang` → `../lib`), in `/usr/lib/llvm-NN/lib`, and Debian's
/// versioned name in the multiarch dir.
fn candidates(clang: &Path, major: u32) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(bin) = clang.canonicalize().ok().as_deref().and_then(Path::parent) {
        dirs.push(bin.join("../lib"));
    }
    dirs.push(PathBuf::from(format!("/usr/lib/llvm-{major}/lib")));
    let mut files = Vec::new();
    for dir in &dirs {
        for name in [
            format!("libclang-{major}.so.1"),
            format!("libclang-{major}.so"),
            "libclang.so.1".to_string(),
            "libclang.so".to_string(),
        ] {
            files.push(dir.join(name));
        }
    }
    // Only the versioned name here: the multiarch dir holds every major's library.
    let multiarch = format!("/usr/lib/{}-linux-gnu", std::env::consts::ARCH);
    files.push(Path::new(&multiarch).join(format!("libclang-{major}.so.1")));
    let mut seen = std::collections::BTreeSet::new();
    files
        .into_iter()
        .filter_map(|f| f.canonicalize().ok())
        .filter(|f| seen.insert(f.clone()))
        .collect()
}

/// Loads `path` once per process (clang-sys finds it through `LIBCLANG_PATH`). Call with
/// [`LIBRARIES`] held.
fn load(
    cache: &mut BTreeMap<PathBuf, Result<Arc<SharedLibrary>, String>>,
    path: &Path,
) -> Result<Arc<SharedLibrary>, String> {
    if let Some(done) = cache.get(path) {
        return done.clone();
    }
    const VAR: &str = "LIBCLANG_PATH";
    let previous = std::env::var_os(VAR);
    // SAFETY: clang-sys reads LIBCLANG_PATH to pick the file; it has no other way to be told
    // one. std serialises its own environment reads and writes; the other reader in this
    // process that does not go through std is libclang itself, and every libclang call holds
    // LIBRARIES, as this one does. The variable is restored before the lock is released.
    unsafe { std::env::set_var(VAR, path) };
    let loaded = clang_sys::load_manually();
    // SAFETY: as above.
    unsafe {
        match previous {
            Some(v) => std::env::set_var(VAR, v),
            None => std::env::remove_var(VAR),
        }
    }
    let result = loaded.and_then(|lib| {
        // clang-sys falls back to searching directories when the path does not match its
        // file-name patterns: make sure it opened the file asked for.
        if lib.path().canonicalize().ok().as_deref() == Some(path) {
            Ok(Arc::new(lib))
        } else {
            Err(format!(
                "asked for {}, clang-sys opened {}",
                path.display(),
                lib.path().display()
            ))
        }
    });
    cache.insert(path.to_path_buf(), result.clone());
    result
}

/// Installs a library as this thread's libclang for clang-sys, restoring the previous one when
/// dropped (also on panic).
struct OnThisThread(Option<Arc<SharedLibrary>>);

impl OnThisThread {
    fn install(lib: &Arc<SharedLibrary>) -> Self {
        Self(clang_sys::set_library(Some(lib.clone())))
    }
}

impl Drop for OnThisThread {
    fn drop(&mut self) {
        clang_sys::set_library(self.0.take());
    }
}

/// Takes ownership of a CXString: its text, then disposed.
///
/// # Safety
/// `s` came from libclang, is disposed nowhere else, and libclang is loaded on this thread.
unsafe fn take_string(s: CXString) -> String {
    // SAFETY: the caller guarantees `s` is a live CXString; clang_getCString returns NULL or a
    // NUL-terminated string owned by `s`, copied out before `s` is disposed.
    unsafe {
        let p = clang_sys::clang_getCString(s);
        let text = if p.is_null() {
            String::new()
        } else {
            CStr::from_ptr(p).to_string_lossy().into_owned()
        };
        clang_sys::clang_disposeString(s);
        text
    }
}

/// The functions used here; a library without one of them is not used (clang-sys would panic
/// on the call).
fn has_functions() -> bool {
    use clang_sys::*;
    [
        clang_getClangVersion::is_loaded(),
        clang_createIndex::is_loaded(),
        clang_disposeIndex::is_loaded(),
        clang_parseTranslationUnit2::is_loaded(),
        clang_disposeTranslationUnit::is_loaded(),
        clang_getNumDiagnostics::is_loaded(),
        clang_getDiagnostic::is_loaded(),
        clang_disposeDiagnostic::is_loaded(),
        clang_getDiagnosticSeverity::is_loaded(),
        clang_getDiagnosticSpelling::is_loaded(),
        clang_getDiagnosticOption::is_loaded(),
        clang_getDiagnosticLocation::is_loaded(),
        clang_getChildDiagnostics::is_loaded(),
        clang_getNumDiagnosticsInSet::is_loaded(),
        clang_getDiagnosticInSet::is_loaded(),
        clang_getPresumedLocation::is_loaded(),
        clang_getExpansionLocation::is_loaded(),
        clang_getInclusions::is_loaded(),
        clang_getCString::is_loaded(),
        clang_disposeString::is_loaded(),
    ]
    .iter()
    .all(|l| *l)
}

/// The major of the libclang installed on this thread.
fn loaded_major() -> Option<u32> {
    // SAFETY: called with a library installed on this thread that has clang_getClangVersion
    // (checked by has_functions); the returned CXString is taken exactly once.
    let version = unsafe { take_string(clang_sys::clang_getClangVersion()) };
    parse_version(&version).map(|(major, _)| major)
}

/// Why this process must not load libclang, if it must not: a statically linked executable
/// (the `cargo xtask dist` build, the one the image, the DaemonSet and the kernel-upgrade gate
/// run) has no dynamic loader of its own. glibc's static dlopen maps a second libc and the
/// shared libLLVM next to the static one, and the first libclang call crashes inside libLLVM
/// with SIGSEGV (measured: exit 139 on `compile --as-node` of a failing tree). Checked at run
/// time, from the process's own program headers, so no build can reach the crash.
pub fn refusal() -> Option<String> {
    crate::exe::is_statically_linked().then(|| {
        "this preflight is statically linked (the shipped build); loading libclang into a \
         static executable crashes inside libLLVM, so clang's text output is parsed"
            .to_string()
    })
}

/// The libclang matching `toolchain`'s major under `mode`. `Err` says why the text parser is
/// used instead (for the report).
pub fn open(mode: &Mode, toolchain: &Toolchain) -> Result<Library, String> {
    let major = toolchain.major;
    if let Some(why) = refusal() {
        return Err(why);
    }
    let paths = match mode {
        Mode::Off => {
            return Err("turned off (--libclang off or PREFLIGHT_LIBCLANG=off)".into());
        }
        Mode::Library(path) => vec![
            path.canonicalize()
                .map_err(|e| format!("libclang {}: {e}", path.display()))?,
        ],
        Mode::Auto => candidates(&toolchain.clang, major),
    };
    if paths.is_empty() {
        return Err(format!(
            "no libclang {major} found (next to {}, /usr/lib/llvm-{major}/lib; Debian: apt \
             install libclang1-{major})",
            toolchain.clang.display()
        ));
    }
    let mut cache = LIBRARIES.lock().unwrap_or_else(|p| p.into_inner());
    let mut why = Vec::new();
    for path in paths {
        let shared = match load(&mut cache, &path) {
            Ok(s) => s,
            Err(e) => {
                why.push(e);
                continue;
            }
        };
        let _installed = OnThisThread::install(&shared);
        if !has_functions() {
            why.push(format!(
                "{}: lacks functions for diagnostics",
                path.display()
            ));
            continue;
        }
        match loaded_major() {
            Some(m) if m == major => {
                return Ok(Library {
                    path,
                    major,
                    shared,
                });
            }
            found => why.push(format!(
                "{} is libclang {}, the compile used clang {major}",
                path.display(),
                found.map_or("of unknown version".into(), |m| m.to_string())
            )),
        }
    }
    Err(why.join("; "))
}

/// clang's command line for the front end alone: the job's arguments in order (target, -std,
/// -D, -W, -I order) without the output and action flags (`-c`, `-emit-llvm`, `-o FILE`) and
/// the source, which libclang takes separately; plus `-working-directory`, the directory
/// clang ran in, so relative paths resolve the same. Returns (source, arguments).
pub fn frontend_args(job: &Job) -> (String, Vec<String>) {
    let source = format!("{}.c", job.program);
    let mut args = Vec::new();
    let mut it = job.clang_args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-o" => {
                it.next();
            }
            "-c" | "-emit-llvm" => {}
            s if s == source => {}
            _ => args.push(a.clone()),
        }
    }
    args.push(format!("-working-directory={}", job.cwd.display()));
    (source, args)
}

/// Owned CX objects, disposed on drop.
struct Index(CXIndex);
impl Drop for Index {
    fn drop(&mut self) {
        // SAFETY: created by clang_createIndex, disposed only here, after every TU made from it
        // (declared later, so dropped first).
        unsafe { clang_sys::clang_disposeIndex(self.0) }
    }
}

struct Unit(CXTranslationUnit);
impl Drop for Unit {
    fn drop(&mut self) {
        // SAFETY: a non-null TU from clang_parseTranslationUnit2, disposed only here, after the
        // diagnostics taken from it (dropped within each loop iteration).
        unsafe { clang_sys::clang_disposeTranslationUnit(self.0) }
    }
}

struct Diag(CXDiagnostic);
impl Drop for Diag {
    fn drop(&mut self) {
        // SAFETY: from clang_getDiagnostic / clang_getDiagnosticInSet, whose documentation asks
        // for clang_disposeDiagnostic; disposed only here.
        unsafe { clang_sys::clang_disposeDiagnostic(self.0) }
    }
}

/// File (by libclang's identity) → the locations of the #include directives that brought it
/// in, innermost first as libclang reports them.
type Inclusions = Vec<(CXFile, Vec<CXSourceLocation>)>;

extern "C" fn collect_inclusion(
    file: CXFile,
    stack: *mut CXSourceLocation,
    len: c_uint,
    data: CXClientData,
) {
    // SAFETY: `data` is the &mut Inclusions passed to clang_getInclusions below, alive and not
    // otherwise borrowed during the call; `stack` points at `len` locations owned by libclang
    // for the duration of this callback (copied out, they stay valid while the TU lives).
    unsafe {
        let out = &mut *(data as *mut Inclusions);
        let stack = if stack.is_null() || len == 0 {
            Vec::new()
        } else {
            std::slice::from_raw_parts(stack, len as usize).to_vec()
        };
        out.push((file, stack));
    }
}

/// `file:line:col` where clang's text output would print it (the presumed location: the
/// expansion site, honouring #line); None when the location has no file.
///
/// # Safety
/// `loc` belongs to a live TU and libclang is loaded on this thread.
unsafe fn presumed(loc: CXSourceLocation) -> Option<Location> {
    let mut file = CXString::default();
    let (mut line, mut col) = (0, 0);
    // SAFETY: out-pointers to locals; the file CXString is taken exactly once.
    let file = unsafe {
        clang_sys::clang_getPresumedLocation(loc, &mut file, &mut line, &mut col);
        take_string(file)
    };
    (!file.is_empty()).then_some(Location { file, line, col })
}

/// The file a location expands in (libclang's identity for it).
///
/// # Safety
/// As [`presumed`].
unsafe fn file_of(loc: CXSourceLocation) -> CXFile {
    let mut file: CXFile = ptr::null_mut();
    // SAFETY: out-pointers to a local; line/column/offset are not wanted (NULL is allowed).
    unsafe {
        clang_sys::clang_getExpansionLocation(
            loc,
            &mut file,
            ptr::null_mut(),
            ptr::null_mut(),
            ptr::null_mut(),
        )
    };
    file
}

/// One libclang diagnostic as the text parser's [`Diagnostic`]: children (the "previous
/// definition is here" note, macro expansion notes) become `notes`, flattened as clang prints
/// them.
///
/// # Safety
/// `d` is a live diagnostic of a live TU; libclang is loaded on this thread.
#[allow(non_upper_case_globals)] // libclang's constant names, matched as patterns
unsafe fn convert(d: CXDiagnostic, inclusions: &Inclusions) -> Option<Diagnostic> {
    // SAFETY: every call takes `d` (live, per the caller) or out-pointers to locals; each
    // CXString is taken once; each child diagnostic is wrapped in Diag and disposed.
    unsafe {
        let severity = match clang_sys::clang_getDiagnosticSeverity(d) {
            CXDiagnostic_Ignored => return None,
            CXDiagnostic_Note => Severity::Note,
            CXDiagnostic_Warning => Severity::Warning,
            CXDiagnostic_Error => Severity::Error,
            CXDiagnostic_Fatal => Severity::Fatal,
            _ => Severity::Remark,
        };
        let message = take_string(clang_sys::clang_getDiagnosticSpelling(d));
        let mut disable = CXString::default();
        let option = take_string(clang_sys::clang_getDiagnosticOption(d, &mut disable));
        take_string(disable);
        // Only -W options, as the text parser keeps (libclang also names -ferror-limit=).
        let flag = option.starts_with("-W").then_some(option);
        let loc = clang_sys::clang_getDiagnosticLocation(d);
        let location = presumed(loc);
        let file = file_of(loc);
        let included_from = match inclusions
            .iter()
            .find(|(f, _)| !file.is_null() && *f == file)
        {
            // Outermost first, file:line like clang's "In file included from" lines.
            Some((_, stack)) => stack
                .iter()
                .rev()
                .filter_map(|l| presumed(*l))
                .map(|l| Location { col: 0, ..l })
                .collect(),
            None => Vec::new(),
        };
        let mut notes = Vec::new();
        let children = clang_sys::clang_getChildDiagnostics(d);
        // The child set is owned by `d` (not disposed, per libclang's documentation).
        if !children.is_null() {
            for i in 0..clang_sys::clang_getNumDiagnosticsInSet(children) {
                let child = Diag(clang_sys::clang_getDiagnosticInSet(children, i));
                // libclang renders the include stack as child notes too; it is in
                // `included_from` already, as the text parser keeps it.
                let Some(mut n) = convert(child.0, inclusions) else {
                    continue;
                };
                if n.message.starts_with("in file included from ") {
                    continue;
                }
                let grandchildren = std::mem::take(&mut n.notes);
                notes.push(n);
                notes.extend(grandchildren);
            }
        }
        Some(Diagnostic {
            severity,
            location,
            message,
            flag,
            included_from,
            notes,
        })
    }
}

/// Parses the job's translation unit with `lib` and returns its diagnostics in clang's order.
/// `Err` when libclang could not parse at all (bad arguments, crash): use the text.
#[allow(non_upper_case_globals)] // libclang's constant names, matched as patterns
pub fn diagnostics(lib: &Library, job: &Job) -> Result<Vec<Diagnostic>, String> {
    let (source, args) = frontend_args(job);
    let c = |s: &str| CString::new(s).map_err(|_| format!("argument with a NUL byte: {s:?}"));
    let source_c = c(&source)?;
    let args_c: Vec<CString> = args.iter().map(|a| c(a)).collect::<Result<_, _>>()?;
    let argv: Vec<*const c_char> = args_c.iter().map(|a| a.as_ptr()).collect();
    let argc = c_int::try_from(argv.len()).map_err(|_| "too many arguments".to_string())?;

    let _serialised = LIBRARIES.lock().unwrap_or_else(|p| p.into_inner());
    let _installed = OnThisThread::install(&lib.shared);
    // SAFETY: libclang is installed on this thread and has every function called here (open()
    // checked); LIBRARIES is held. Pointers passed in (source, argv) outlive the parse. Every
    // CX object is wrapped so it is disposed in the right order: diagnostics, then the TU,
    // then the index.
    unsafe {
        let index = Index(clang_sys::clang_createIndex(0, 0));
        if index.0.is_null() {
            return Err(format!("libclang {}: could not create an index", lib.major));
        }
        let mut tu: CXTranslationUnit = ptr::null_mut();
        let code = clang_sys::clang_parseTranslationUnit2(
            index.0,
            source_c.as_ptr(),
            argv.as_ptr(),
            argc,
            ptr::null_mut(),
            0,
            CXTranslationUnit_None,
            &mut tu,
        );
        if tu.is_null() || code != CXError_Success {
            if !tu.is_null() {
                drop(Unit(tu));
            }
            let what = match code {
                CXError_Crashed => "libclang crashed (and recovered)",
                CXError_InvalidArguments => "invalid arguments",
                // What clang reports as a fatal setup error (an unknown -mcpu, a bad flag)
                // leaves libclang without a translation unit.
                _ => "no translation unit (a flag or target this libclang rejects)",
            };
            return Err(format!(
                "libclang {} could not parse {source}: {what} (CXErrorCode {code})",
                lib.major
            ));
        }
        let unit = Unit(tu);
        let mut inclusions: Inclusions = Vec::new();
        clang_sys::clang_getInclusions(
            unit.0,
            collect_inclusion,
            &mut inclusions as *mut Inclusions as CXClientData,
        );
        let mut out: Vec<Diagnostic> = Vec::new();
        for i in 0..clang_sys::clang_getNumDiagnostics(unit.0) {
            let raw = Diag(clang_sys::clang_getDiagnostic(unit.0, i));
            let Some(d) = convert(raw.0, &inclusions) else {
                continue;
            };
            // A note at the top level belongs to the diagnostic before it, as in the text.
            match (d.severity, out.last_mut()) {
                (Severity::Note, Some(parent)) => parent.notes.push(d),
                _ => out.push(d),
            }
        }
        drop(unit);
        drop(index);
        Ok(out)
    }
}

/// A program's diagnostics and where they came from.
pub struct Chosen {
    pub diagnostics: Vec<Diagnostic>,
    pub from: Source,
    /// Why libclang was not used although the compile failed or warned.
    pub fallback: Option<String>,
    /// Time spent in the libclang parse (0 when not run).
    pub libclang_ms: f64,
}

/// libclang's diagnostics when the compile failed or warned and `library` loaded; otherwise,
/// or when libclang cannot tell, `text` (clang's output parsed), with the reason.
pub fn choose(
    library: Option<&Result<Library, String>>,
    job: &Job,
    compiled: bool,
    text: Vec<Diagnostic>,
) -> Chosen {
    let text_only = |text, fallback| Chosen {
        diagnostics: text,
        from: Source::Text,
        fallback,
        libclang_ms: 0.0,
    };
    if compiled && text.is_empty() {
        return text_only(text, None);
    }
    let lib = match library {
        Some(Ok(lib)) => lib,
        Some(Err(why)) => return text_only(text, Some(why.clone())),
        None => return text_only(text, None),
    };
    let start = std::time::Instant::now();
    let parsed = diagnostics(lib, job);
    let libclang_ms = start.elapsed().as_secs_f64() * 1e3;
    let (diagnostics, from, fallback) = match parsed {
        Ok(d) if !compiled && !d.iter().any(Diagnostic::is_error) => (
            text,
            Source::Text,
            Some(format!(
                "libclang {}'s front end saw no error: the failure is in code generation or \
                 llc, which only clang's text output reports",
                lib.major
            )),
        ),
        Ok(d) => (d, Source::Libclang(lib.major), None),
        Err(e) => (text, Source::Text, Some(e)),
    };
    Chosen {
        diagnostics,
        from,
        fallback,
        libclang_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frontend_args_keep_the_flags_in_order_and_drop_output_and_action() {
        let job = Job {
            program: "bpf_lxc".into(),
            cwd: PathBuf::from("/b"),
            output: PathBuf::from("/o/bpf_lxc.o"),
            clang: PathBuf::from("/usr/bin/clang-16"),
            clang_args: [
                "-O2",
                "--target=bpf",
                "-std=gnu89",
                "-DX=1",
                "-Werror",
                "-I/s/globals",
                "-I/b",
                "-emit-llvm",
                "-c",
                "bpf_lxc.c",
                "-o",
                "-",
            ]
            .map(String::from)
            .to_vec(),
            llc: None,
            weight: 0,
        };
        let (source, args) = frontend_args(&job);
        assert_eq!(source, "bpf_lxc.c");
        assert_eq!(
            args,
            [
                "-O2",
                "--target=bpf",
                "-std=gnu89",
                "-DX=1",
                "-Werror",
                "-I/s/globals",
                "-I/b",
                "-working-directory=/b"
            ]
        );
    }

    #[test]
    fn mode_parses_auto_off_and_paths() {
        assert_eq!("auto".parse::<Mode>(), Ok(Mode::Auto));
        assert_eq!("off".parse::<Mode>(), Ok(Mode::Off));
        assert_eq!(
            "/x/libclang.so.1".parse::<Mode>(),
            Ok(Mode::Library("/x/libclang.so.1".into()))
        );
        assert!("".parse::<Mode>().is_err());
        assert_eq!(Source::Libclang(19).to_string(), "libclang 19");
        assert_eq!(
            serde_json::to_string(&Source::Text).unwrap(),
            "\"clang text output\""
        );
    }
}
