//! Compiling modules in parallel: each compile has a thread pool of its own while it runs, so
//! that the CPU time of the pool's threads is that compile's, and is charged with it.
//!
//! wasmtime compiles functions in parallel on the rayon pool it runs in (`install`). The
//! global pool would mix the work of concurrent compiles and leave it uncounted; a pool taken
//! by one compile at a time and asked for its threads' CPU clocks before and after counts it
//! exactly. Pools are kept for the next compile; there are as many as compiles ever ran at
//! once (the platform runs at most one blocking job per core).

use std::cell::Cell;
use std::sync::Mutex;

use wasmtime::{Engine, Module};

thread_local! {
    /// CPU time that pool threads spent for compiles this thread asked for and that
    /// [`take_helpers_cpu`] has not taken yet, in nanoseconds.
    static HELPERS_CPU: Cell<i64> = const { Cell::new(0) };
}

/// The CPU time pool threads spent for this thread's compiles since the last call.
pub(crate) fn take_helpers_cpu() -> i64 {
    HELPERS_CPU.take()
}

/// The pools of compile threads not in use.
#[derive(Debug)]
pub(crate) struct Compiler {
    idle: Mutex<Vec<rayon::ThreadPool>>,
    threads: usize,
}

impl Compiler {
    /// Compiles with pools of one thread per core.
    pub(crate) fn new() -> Self {
        let threads = crate::cores();
        Self { idle: Mutex::new(Vec::new()), threads }
    }

    /// Compiles `binary` on a pool of its own; the pool threads' CPU time is added to what
    /// [`take_helpers_cpu`] returns on this thread. Without a pool (threads could not be
    /// started), compiles on this thread alone.
    pub(crate) fn compile(&self, engine: &Engine, binary: &[u8]) -> wasmtime::Result<Module> {
        let Some(pool) = self.take_pool() else { return Module::new(engine, binary) };
        let before: i64 = pool.broadcast(|_| crate::platform::thread_cpu_ns()).iter().sum();
        let compiled = pool.install(|| Module::new(engine, binary));
        let after: i64 = pool.broadcast(|_| crate::platform::thread_cpu_ns()).iter().sum();
        HELPERS_CPU.set(HELPERS_CPU.get().saturating_add(after.saturating_sub(before)));
        self.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push(pool);
        compiled
    }

    fn take_pool(&self) -> Option<rayon::ThreadPool> {
        let idle = self.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).pop();
        idle.or_else(|| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(self.threads)
                .thread_name(|index| format!("nebulet-compile-{index}"))
                .start_handler(|_| crate::platform::lower_priority())
                .build()
                .ok()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A module of `count` functions, each with a loop and some arithmetic.
    fn many_functions(count: usize) -> String {
        let body = "(local $i i32) (loop $again (local.set $i (i32.add (local.get $i) \
                    (i32.mul (local.get 0) (i32.const 7)))) (br_if $again (i32.lt_u (local.get \
                    $i) (i32.const 1000)))) (local.get $i)";
        let functions: String = (0..count)
            .map(|index| format!("(func (export \"f{index}\") (param i32) (result i32) {body})"))
            .collect();
        format!("(module {functions})")
    }

    #[test]
    fn the_pool_threads_do_the_work_and_their_cpu_is_counted() {
        let engine = Engine::new(&crate::engine_config()).unwrap();
        let binary = wat::parse_str(many_functions(400)).unwrap();
        let compiler = Compiler::new();
        take_helpers_cpu();
        let own_before = crate::platform::thread_cpu_ns();
        let module = compiler.compile(&engine, &binary).unwrap();
        let own = crate::platform::thread_cpu_ns() - own_before;
        let helpers = take_helpers_cpu();
        assert!(module.get_export("f399").is_some());
        // The calling thread only waits while the pool compiles: what the compile cost is the
        // pool's, and it is counted.
        assert!(helpers > own, "pool threads {helpers} ns, calling thread {own} ns");
        assert_eq!(take_helpers_cpu(), 0, "taken once");
        // The pool is kept for the next compile, and counts again.
        compiler.compile(&engine, &binary).unwrap();
        assert!(take_helpers_cpu() > 0);
        assert_eq!(compiler.idle.lock().unwrap().len(), 1);
    }
}
