//! The load-time rewrite of `memory.atomic.wait32/64` and `memory.atomic.notify` into calls.
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
use wasm_encoder::{CodeSection, EntityType, ImportSection, Instruction, TypeSection, ValType};
use wasmparser::{Operator, Parser, Payload};

/// The import module of the rewritten instructions.
pub const MODULE: &str = "nebulet:atomics";

/// The imports added, in order, with their parameters and result.
const IMPORTS: [(&str, &[ValType]); 3] = [
    // (address, expected, timeout, offset) -> 0 woken, 1 not equal, 2 timed out
    ("wait32", &[ValType::I32, ValType::I32, ValType::I64, ValType::I32]),
    ("wait64", &[ValType::I32, ValType::I64, ValType::I64, ValType::I32]),
    // (address, count, offset) -> woken
    ("notify", &[ValType::I32, ValType::I32, ValType::I32]),
];

/// What a scan of the module found.
struct Scan {
    types: u32,
    function_imports: u32,
    uses_wait_or_notify: bool,
    has_import_section: bool,
    has_type_section: bool,
}

fn scan(bytes: &[u8]) -> Result<Scan, String> {
    let mut scan = Scan {
        types: 0,
        function_imports: 0,
        uses_wait_or_notify: false,
        has_import_section: false,
        has_type_section: false,
    };
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
                    if matches!(
                        import.map_err(|error| error.to_string())?.ty,
                        wasmparser::TypeRef::Func(_)
                    ) {
                        scan.function_imports += 1;
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

/// The module with its wait/notify instructions rewritten, or unchanged if it has none.
pub fn prepare_module(bytes: &[u8]) -> Result<Cow<'_, [u8]>, String> {
    let scan = scan(bytes)?;
    if !scan.uses_wait_or_notify {
        return Ok(Cow::Borrowed(bytes));
    }
    if !scan.has_import_section || !scan.has_type_section {
        // A module that waits on memory it defines itself and imports nothing: rare enough that
        // refusing it clearly beats re-ordering sections here.
        return Err("a module that uses memory.atomic.wait/notify must import something".into());
    }
    let mut rewriter = Rewriter { types: scan.types, function_imports: scan.function_imports };
    let mut module = wasm_encoder::Module::new();
    rewriter
        .parse_core_module(&mut module, Parser::new(0), bytes)
        .map_err(|error| format!("rewriting atomics: {error:?}"))?;
    Ok(Cow::Owned(module.finish()))
}

struct Rewriter {
    types: u32,
    function_imports: u32,
}

impl Rewriter {
    fn import_index(&self, which: usize) -> u32 {
        self.function_imports + which as u32
    }
}

impl Reencode for Rewriter {
    type Error = String;

    fn function_index(&mut self, function: u32) -> Result<u32, ReencodeError<String>> {
        Ok(if function < self.function_imports {
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
        for (index, (name, _)) in IMPORTS.iter().enumerate() {
            imports.import(MODULE, name, EntityType::Function(self.types + index as u32));
        }
        Ok(())
    }

    fn parse_function_body(
        &mut self,
        code: &mut CodeSection,
        body: wasmparser::FunctionBody<'_>,
    ) -> Result<(), ReencodeError<String>> {
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

    fn wat_bytes(text: &str) -> Vec<u8> {
        wat::parse_str(text).unwrap()
    }

    #[test]
    fn modules_without_wait_or_notify_are_unchanged() {
        let bytes = wat_bytes(r#"(module (func (export "_start")))"#);
        assert!(matches!(prepare_module(&bytes).unwrap(), Cow::Borrowed(_)));
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
