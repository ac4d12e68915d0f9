//! Modules made ready to load: checked, and rewritten where the kernel needs it.
//!
//! A module may not define a shared memory: wasmtime asks no limiter when one grows, so the
//! kernel could not charge it (threaded modules import theirs, as wasi-threads has them do, and
//! the kernel makes it with a capped maximum). Memory 0 is the memory system-call pointers name:
//! where the module does not export it as `memory`, it is exported as [`MEMORY_EXPORT`] too.
//!
//! Threads of a process are coroutines on one OS thread, so a native `atomic.wait` would stall
//! every thread of the process (and an OS thread of the kernel). Before a module is compiled, each
//! of these instructions becomes a call to an import of [`MODULE`] that parks or wakes coroutines
//! through the process's futex table (the same one `futex_wait`/`futex_wake` use). The memarg's
//! offset is passed as a last argument; the host adds it, checks bounds and alignment, and traps
//! as the instruction would. New imports shift the index of every defined function, so the whole
//! module is re-encoded with `wasm-encoder`'s `Reencode`, which renumbers every function index
//! (calls, exports, elements, start, names).

use alloc::borrow::Cow;
use alloc::format;
use alloc::string::{String, ToString};

use wasm_encoder::reencode::{Error as ReencodeError, Reencode, utils};
use wasm_encoder::{
    CodeSection, EntityType, ExportKind, ExportSection, ImportSection, Instruction, SectionId,
    TypeSection, ValType,
};
use wasmparser::{Operator, Parser, Payload};

/// This file's own text: what a cache of compiled modules keys on, so that a module prepared
/// by an older rewrite is never taken for one prepared by this one (the crate's version does
/// not change with every commit).
pub const PREPARE_SOURCE: &str = include_str!("prepare.rs");

/// The import module of the rewritten instructions.
pub const MODULE: &str = "nebulet:atomics";

/// The name under which memory 0 is exported when the module itself does not export it as
/// `memory`.
pub const MEMORY_EXPORT: &str = "nebulet:memory0";

/// The imports added, in order, with their parameters and result.
const IMPORTS: [(&str, &[ValType]); 3] = [
    // (address, expected, timeout, offset) -> 0 woken, 1 not equal, 2 timed out
    ("wait32", &[ValType::I32, ValType::I32, ValType::I64, ValType::I32]),
    ("wait64", &[ValType::I32, ValType::I64, ValType::I64, ValType::I32]),
    // (address, count, offset) -> woken
    ("notify", &[ValType::I32, ValType::I32, ValType::I32]),
];

/// What a scan of the module found.
#[derive(Default)]
struct Scan {
    types: u32,
    function_imports: u32,
    uses_wait_or_notify: bool,
    has_import_section: bool,
    has_type_section: bool,
    has_export_section: bool,
    /// Memories, imported and defined.
    memories: u32,
    defines_shared_memory: bool,
    /// Whether memory 0 is exported as `memory` or as [`MEMORY_EXPORT`].
    memory_zero_exported: bool,
}

fn scan(bytes: &[u8]) -> Result<Scan, String> {
    let mut scan = Scan::default();
    for payload in Parser::new(0).parse_all(bytes) {
        match payload.map_err(|error| error.to_string())? {
            Payload::TypeSection(section) => {
                scan.has_type_section = true;
                for group in section {
                    scan.types += group.map_err(|error| error.to_string())?.types().len() as u32;
                }
            }
            Payload::ImportSection(section) => {
                scan.has_import_section = true;
                for import in section.into_imports() {
                    match import.map_err(|error| error.to_string())?.ty {
                        wasmparser::TypeRef::Func(_) => scan.function_imports += 1,
                        wasmparser::TypeRef::Memory(_) => scan.memories += 1,
                        _ => {}
                    }
                }
            }
            Payload::MemorySection(section) => {
                for memory in section {
                    scan.defines_shared_memory |= memory.map_err(|error| error.to_string())?.shared;
                    scan.memories += 1;
                }
            }
            Payload::ExportSection(section) => {
                scan.has_export_section = true;
                for export in section {
                    let export = export.map_err(|error| error.to_string())?;
                    if export.kind == wasmparser::ExternalKind::Memory
                        && export.index == 0
                        && (export.name == "memory" || export.name == MEMORY_EXPORT)
                    {
                        scan.memory_zero_exported = true;
                    }
                }
            }
            Payload::CodeSectionEntry(body) => {
                let mut operators =
                    body.get_operators_reader().map_err(|error| error.to_string())?;
                while !operators.eof() {
                    if let Operator::MemoryAtomicWait32 { .. }
                    | Operator::MemoryAtomicWait64 { .. }
                    | Operator::MemoryAtomicNotify { .. } =
                        operators.read().map_err(|error| error.to_string())?
                    {
                        scan.uses_wait_or_notify = true;
                    }
                }
            }
            _ => {}
        }
    }
    Ok(scan)
}

/// The module checked, with its wait/notify instructions rewritten and its memory 0 exported as
/// [`MEMORY_EXPORT`] where needed, or unchanged if it needs neither.
pub fn prepare_module(bytes: &[u8]) -> Result<Cow<'_, [u8]>, String> {
    let scan = scan(bytes)?;
    if scan.defines_shared_memory {
        return Err("the module defines a shared memory; a threaded module imports its memory \
                    (as wasi-threads has it)"
            .into());
    }
    let export_memory_zero = scan.memories > 0 && !scan.memory_zero_exported;
    if !scan.uses_wait_or_notify && !export_memory_zero {
        return Ok(Cow::Borrowed(bytes));
    }
    if scan.uses_wait_or_notify && (!scan.has_import_section || !scan.has_type_section) {
        // A module that waits on memory it defines itself and imports nothing: rare enough that
        // refusing it clearly beats re-ordering sections here.
        return Err("a module that uses memory.atomic.wait/notify must import something".into());
    }
    let mut rewriter = Rewriter {
        types: scan.types,
        function_imports: scan.function_imports,
        rewrite_atomics: scan.uses_wait_or_notify,
        export_memory_zero,
        export_section_pending: export_memory_zero && !scan.has_export_section,
    };
    let mut module = wasm_encoder::Module::new();
    rewriter
        .parse_core_module(&mut module, Parser::new(0), bytes)
        .map_err(|error| format!("preparing the module: {error:?}"))?;
    Ok(Cow::Owned(module.finish()))
}

struct Rewriter {
    types: u32,
    function_imports: u32,
    rewrite_atomics: bool,
    export_memory_zero: bool,
    /// The module has no export section: one is added for memory 0 at its place.
    export_section_pending: bool,
}

impl Rewriter {
    fn import_index(&self, which: usize) -> u32 {
        self.function_imports + which as u32
    }
}

impl Reencode for Rewriter {
    type Error = String;

    fn function_index(&mut self, function: u32) -> Result<u32, ReencodeError<String>> {
        Ok(if !self.rewrite_atomics || function < self.function_imports {
            function
        } else {
            function + IMPORTS.len() as u32
        })
    }

    fn parse_type_section(
        &mut self,
        types: &mut TypeSection,
        section: wasmparser::TypeSectionReader<'_>,
    ) -> Result<(), ReencodeError<String>> {
        utils::parse_type_section(self, types, section)?;
        if !self.rewrite_atomics {
            return Ok(());
        }
        for (_, params) in IMPORTS {
            types.ty().function(params.iter().copied(), [ValType::I32]);
        }
        Ok(())
    }

    fn parse_import_section(
        &mut self,
        imports: &mut ImportSection,
        section: wasmparser::ImportSectionReader<'_>,
    ) -> Result<(), ReencodeError<String>> {
        utils::parse_import_section(self, imports, section)?;
        if !self.rewrite_atomics {
            return Ok(());
        }
        for (index, (name, _)) in IMPORTS.iter().enumerate() {
            imports.import(MODULE, name, EntityType::Function(self.types + index as u32));
        }
        Ok(())
    }

    fn parse_export_section(
        &mut self,
        exports: &mut ExportSection,
        section: wasmparser::ExportSectionReader<'_>,
    ) -> Result<(), ReencodeError<String>> {
        utils::parse_export_section(self, exports, section)?;
        if self.export_memory_zero {
            exports.export(MEMORY_EXPORT, ExportKind::Memory, 0);
        }
        Ok(())
    }

    fn intersperse_section_hook(
        &mut self,
        module: &mut wasm_encoder::Module,
        _after: Option<SectionId>,
        before: Option<SectionId>,
    ) -> Result<(), ReencodeError<String>> {
        // The export section goes after the global (and tag) sections, before start, elements,
        // data count, code and data.
        let past_exports = match before {
            None => true,
            Some(section) => matches!(
                section,
                SectionId::Start
                    | SectionId::Element
                    | SectionId::DataCount
                    | SectionId::Code
                    | SectionId::Data
            ),
        };
        if self.export_section_pending && past_exports {
            self.export_section_pending = false;
            let mut exports = ExportSection::new();
            exports.export(MEMORY_EXPORT, ExportKind::Memory, 0);
            module.section(&exports);
        }
        Ok(())
    }

    fn parse_function_body(
        &mut self,
        code: &mut CodeSection,
        body: wasmparser::FunctionBody<'_>,
    ) -> Result<(), ReencodeError<String>> {
        if !self.rewrite_atomics {
            return utils::parse_function_body(self, code, body);
        }
        let mut function = utils::new_function_with_parsed_locals(self, &body)?;
        let mut operators = body.get_operators_reader()?;
        while !operators.eof() {
            let (which, memarg) = match operators.read()? {
                Operator::MemoryAtomicWait32 { memarg } => (0, memarg),
                Operator::MemoryAtomicWait64 { memarg } => (1, memarg),
                Operator::MemoryAtomicNotify { memarg } => (2, memarg),
                other => {
                    function.instruction(&self.instruction(other)?);
                    continue;
                }
            };
            if memarg.memory != 0 {
                return Err(ReencodeError::UserError(
                    "atomic wait/notify on a memory other than 0".into(),
                ));
            }
            let offset = u32::try_from(memarg.offset).map_err(|_| {
                ReencodeError::UserError("atomic wait/notify offset beyond 4 GiB".into())
            })?;
            function.instruction(&Instruction::I32Const(offset as i32));
            function.instruction(&Instruction::Call(self.import_index(which)));
        }
        code.function(&function);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use alloc::vec::Vec;

    use super::*;
    use alloc::string::ToString;

    fn wat_bytes(text: &str) -> Vec<u8> {
        wat::parse_str(text).unwrap()
    }

    #[test]
    fn modules_without_wait_or_notify_are_unchanged() {
        let bytes = wat_bytes(r#"(module (func (export "_start")))"#);
        assert!(matches!(prepare_module(&bytes).unwrap(), Cow::Borrowed(_)));
        let bytes = wat_bytes(r#"(module (memory (export "memory") 1) (func (export "_start")))"#);
        assert!(matches!(prepare_module(&bytes).unwrap(), Cow::Borrowed(_)));
    }

    fn memory_exports(bytes: &[u8]) -> Vec<(String, u32)> {
        let mut exports = Vec::new();
        for payload in Parser::new(0).parse_all(bytes) {
            if let Payload::ExportSection(section) = payload.unwrap() {
                for export in section {
                    let export = export.unwrap();
                    if export.kind == wasmparser::ExternalKind::Memory {
                        exports.push((export.name.to_string(), export.index));
                    }
                }
            }
        }
        exports
    }

    #[test]
    fn memory_zero_is_exported_where_the_module_does_not_export_it() {
        let engine = crate::tests::engine();
        for text in [
            // Memory 0 not exported, memory 1 exported as "memory"; a start function.
            r#"(module (memory 1) (memory (export "memory") 2) (func $s) (start $s)
                 (func (export "_start")) (data (i32.const 0) "x"))"#,
            // No export section at all, with elements and data.
            r#"(module (memory 1) (table 1 funcref) (func $f) (elem (i32.const 0) $f)
                 (data (i32.const 0) "x"))"#,
        ] {
            let prepared = prepare_module(&wat_bytes(text)).unwrap().into_owned();
            assert!(memory_exports(&prepared).contains(&(MEMORY_EXPORT.to_string(), 0)));
            wasmtime::Module::new(&engine, &prepared).expect("the prepared module is valid");
        }
    }

    #[test]
    fn defined_shared_memories_are_refused() {
        let bytes = wat_bytes(r#"(module (memory (export "memory") 1 1 shared))"#);
        let error = prepare_module(&bytes).unwrap_err();
        assert!(error.contains("defines a shared memory"), "{error}");
    }

    #[test]
    fn wait_and_notify_become_calls_and_indices_shift() {
        let bytes = wat_bytes(
            r#"(module
                (import "host" "f" (func $f))
                (memory (import "env" "memory") 1 1 shared)
                (func $helper (result i32) (i32.const 7))
                (func (export "_start")
                  (drop (memory.atomic.wait32 offset=8 (i32.const 0) (i32.const 0) (i64.const 0)))
                  (drop (memory.atomic.notify (i32.const 0) (i32.const 1)))
                  (drop (call $helper))
                  (call $f)))"#,
        );
        let rewritten = prepare_module(&bytes).unwrap().into_owned();
        let mut imports = Vec::new();
        let mut calls = Vec::new();
        for payload in Parser::new(0).parse_all(&rewritten) {
            match payload.unwrap() {
                Payload::ImportSection(section) => {
                    for import in section.into_imports() {
                        let import = import.unwrap();
                        imports.push(format!("{}.{}", import.module, import.name));
                    }
                }
                Payload::CodeSectionEntry(body) => {
                    let mut operators = body.get_operators_reader().unwrap();
                    while !operators.eof() {
                        match operators.read().unwrap() {
                            Operator::Call { function_index } => calls.push(function_index),
                            Operator::MemoryAtomicWait32 { .. }
                            | Operator::MemoryAtomicNotify { .. } => {
                                panic!("an atomic wait/notify is left")
                            }
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        assert_eq!(
            imports,
            [
                "host.f",
                "env.memory",
                "nebulet:atomics.wait32",
                "nebulet:atomics.wait64",
                "nebulet:atomics.notify"
            ]
        );
        // wait32 is import 1, notify import 3, $helper moved from 1 to 4, $f stays 0.
        assert_eq!(calls, [1, 3, 4, 0]);
    }
}
