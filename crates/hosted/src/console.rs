//! The host's standard streams: for stdout and for stderr, a writer thread behind a bounded
//! queue; for stdin, a reader whose bytes wait in a shared buffer until a process takes them.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};

use nebulet_kernel::ConsoleStream;
use nebulet_kernel::vfs::Errno;
use tokio::sync::{Notify, Semaphore};

/// Bytes that may wait for stdout and stderr: past it, writers wait (back-pressure).
pub(crate) const QUEUE_BYTES: usize = 1 << 20;

/// Bytes one read takes from the OS's stdin at most.
const READ_BYTES: usize = 1 << 16;

enum Job {
    /// Bytes to write, and the queue space they hold until written.
    Write { bytes: Vec<u8>, space: u32 },
    /// Answered once everything queued before it is written.
    Flush(SyncSender<()>),
}

/// The writer thread of one stream, and its queue. Writers first take space for their bytes (a
/// fair semaphore, so a large write is not overtaken forever by small ones); the thread gives
/// it back once written. A process blocked on a full queue is a pending future: the executor's
/// workers never block. Each stream has its own, so a stdout nobody reads holds up no stderr.
pub(crate) struct ConsoleWriter {
    space: Arc<Semaphore>,
    jobs: Mutex<std::sync::mpsc::Sender<Job>>,
}

/// The host process's writers of stdout and stderr, once started.
static OUTPUT: OnceLock<ConsoleWriter> = OnceLock::new();
static ERROR: OnceLock<ConsoleWriter> = OnceLock::new();

impl ConsoleWriter {
    /// The host process's writer of `stream`, started on first use.
    pub(crate) fn get(stream: ConsoleStream) -> &'static ConsoleWriter {
        match stream {
            ConsoleStream::Output => OUTPUT.get_or_init(|| Self::start("stdout", std::io::stdout)),
            ConsoleStream::Error => ERROR.get_or_init(|| Self::start("stderr", std::io::stderr)),
        }
    }

    /// Waits until everything queued so far on both streams is written (or the stream is gone).
    /// A stream never written to has no writer, and none is started for it.
    pub(crate) fn flush_all() {
        for writer in [OUTPUT.get(), ERROR.get()].into_iter().flatten() {
            writer.flush();
        }
    }

    fn start<W: Write>(name: &str, sink: impl Fn() -> W + Send + 'static) -> ConsoleWriter {
        let space = Arc::new(Semaphore::new(QUEUE_BYTES));
        let (sender, receiver) = std::sync::mpsc::channel();
        let returned = space.clone();
        std::thread::Builder::new()
            .name(format!("nebulet-{name}"))
            .spawn(move || crate::fatal::or_abort(|| write_jobs(&receiver, &returned, sink)))
            .expect("the host can start a console thread");
        ConsoleWriter { space, jobs: Mutex::new(sender) }
    }

    /// Queues `bytes`; completes once they are queued (see the type's doc).
    pub(crate) async fn write(&self, bytes: Vec<u8>) {
        if bytes.is_empty() {
            return;
        }
        // A write larger than the whole queue waits for it to be empty, then takes all of it.
        let space = bytes.len().min(QUEUE_BYTES) as u32;
        let Ok(permit) = self.space.acquire_many(space).await else { return };
        permit.forget();
        self.send(Job::Write { bytes, space });
    }

    /// Waits until everything queued so far is written (or the stream is gone).
    pub(crate) fn flush(&self) {
        let (done, finished) = sync_channel(1);
        self.send(Job::Flush(done));
        let _ = finished.recv();
    }

    fn send(&self, job: Job) {
        // The thread never ends, so the channel never closes.
        let _ = self.jobs.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).send(job);
    }
}

/// The writer thread's loop, over any sink (unit tests use a blocking fake).
fn write_jobs<W: Write>(jobs: &Receiver<Job>, space: &Semaphore, sink: impl Fn() -> W) {
    for job in jobs {
        match job {
            Job::Write { bytes, space: taken } => {
                // A closed stream (a pipe whose reader left) loses the bytes, never the kernel.
                let _ = write_flushed(sink(), &bytes);
                space.add_permits(taken as usize);
            }
            Job::Flush(done) => {
                let _ = done.send(());
            }
        }
    }
}

fn write_flushed(mut sink: impl Write, bytes: &[u8]) -> std::io::Result<()> {
    sink.write_all(bytes)?;
    sink.flush()
}

#[derive(Default)]
struct InputState {
    /// Read from the OS, not yet taken by a process.
    buffer: VecDeque<u8>,
    /// Stdin ended (or failed: then every read fails).
    ended: Option<Result<(), ()>>,
    /// A process waits for bytes: the reader thread should read.
    wanted: bool,
}

/// The host's stdin, shared by all processes. The OS is read only while a process waits, one
/// read at a time, by a thread of its own (a read blocks until a line comes, and the executor
/// must never wait for it, not even at shutdown). What it reads goes to a shared buffer, so a
/// read canceled by the death of its reader leaves the bytes to the next reader.
pub(crate) struct ConsoleInput {
    state: Mutex<InputState>,
    /// Tells the reader thread that bytes are wanted.
    wanted: Condvar,
    /// Tells waiting processes that bytes (or the end) arrived.
    arrived: Notify,
}

impl ConsoleInput {
    /// The host process's stdin, its reader thread started on first use.
    pub(crate) fn get() -> &'static ConsoleInput {
        static INPUT: OnceLock<ConsoleInput> = OnceLock::new();
        INPUT.get_or_init(|| {
            std::thread::Builder::new()
                .name("nebulet-stdin".into())
                .spawn(|| {
                    crate::fatal::or_abort(|| ConsoleInput::get().read_from(std::io::stdin()))
                })
                .expect("the host can start the stdin thread");
            ConsoleInput {
                state: Mutex::new(InputState::default()),
                wanted: Condvar::new(),
                arrived: Notify::new(),
            }
        })
    }

    fn lock(&self) -> MutexGuard<'_, InputState> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Up to `max` bytes; empty at the end of stdin.
    pub(crate) async fn read(&self, max: usize) -> Result<Vec<u8>, Errno> {
        loop {
            let arrived = self.arrived.notified();
            let mut arrived = std::pin::pin!(arrived);
            // Registered before the state is looked at, so no arrival is missed.
            arrived.as_mut().enable();
            {
                let mut state = self.lock();
                if !state.buffer.is_empty() {
                    let count = max.min(state.buffer.len());
                    return Ok(state.buffer.drain(..count).collect());
                }
                match state.ended {
                    Some(Ok(())) => return Ok(Vec::new()),
                    Some(Err(())) => return Err(Errno::IO),
                    None => {
                        state.wanted = true;
                        self.wanted.notify_one();
                    }
                }
            }
            arrived.await;
        }
    }

    /// The reader thread: reads `source` whenever bytes are wanted, until it ends.
    fn read_from(&self, mut source: impl Read) {
        let mut chunk = vec![0; READ_BYTES];
        loop {
            let mut state = self.lock();
            while !state.wanted {
                state = self.wanted.wait(state).unwrap_or_else(|poisoned| poisoned.into_inner());
            }
            drop(state);
            let result = source.read(&mut chunk);
            let mut state = self.lock();
            match result {
                Ok(0) => state.ended = Some(Ok(())),
                Ok(count) => state.buffer.extend(&chunk[..count]),
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => state.ended = Some(Err(())),
            }
            state.wanted = false;
            let ended = state.ended.is_some();
            drop(state);
            self.arrived.notify_waiters();
            if ended {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::channel;

    /// A sink that blocks each write until the test lets it through.
    struct Gate {
        open: Arc<Mutex<Receiver<()>>>,
        written: Arc<Mutex<Vec<u8>>>,
    }

    impl Write for Gate {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.open.lock().unwrap().recv().unwrap();
            self.written.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_full_queue_holds_writers_until_the_stream_takes_bytes() {
        let space = Arc::new(Semaphore::new(QUEUE_BYTES));
        let (sender, receiver) = channel();
        let (open, gate) = channel();
        let gate = Arc::new(Mutex::new(gate));
        let written = Arc::new(Mutex::new(Vec::new()));
        let thread_space = space.clone();
        let (thread_gate, thread_written) = (gate.clone(), written.clone());
        std::thread::spawn(move || {
            let sink = || Gate { open: thread_gate.clone(), written: thread_written.clone() };
            write_jobs(&receiver, &thread_space, sink);
        });
        let writer = ConsoleWriter { space, jobs: Mutex::new(sender) };
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        runtime.block_on(async {
            let half = vec![b'a'; QUEUE_BYTES / 2];
            // Two halves fill the queue while the stream takes nothing.
            writer.write(half.clone()).await;
            writer.write(half.clone()).await;
            let mut third = std::pin::pin!(writer.write(vec![b'b'; 10]));
            std::future::poll_fn(|context| {
                assert!(third.as_mut().poll(context).is_pending(), "the queue is full");
                std::task::Poll::Ready(())
            })
            .await;
            // The stream takes the first half: the third write gets in.
            open.send(()).unwrap();
            third.await;
            open.send(()).unwrap();
            open.send(()).unwrap();
        });
        writer.flush();
        let written = written.lock().unwrap();
        assert_eq!(written.len(), QUEUE_BYTES + 10);
        assert_eq!(&written[QUEUE_BYTES..], b"bbbbbbbbbb", "in order");
    }

    #[test]
    fn bytes_of_a_dropped_read_go_to_the_next_reader() {
        let input = Arc::new(ConsoleInput {
            state: Mutex::new(InputState::default()),
            wanted: Condvar::new(),
            arrived: Notify::new(),
        });
        let (source, mut host_end) = std::io::pipe().unwrap();
        let reader = input.clone();
        std::thread::spawn(move || reader.read_from(source));
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        runtime.block_on(async {
            let mut first = Box::pin(input.read(100));
            std::future::poll_fn(|context| {
                assert!(first.as_mut().poll(context).is_pending(), "nothing to read yet");
                std::task::Poll::Ready(())
            })
            .await;
            // The reader thread now waits in the OS's read for the first reader: which dies.
            drop(first);
            host_end.write_all(b"line\n").unwrap();
            assert_eq!(input.read(3).await, Ok(b"lin".to_vec()));
            assert_eq!(input.read(100).await, Ok(b"e\n".to_vec()));
            drop(host_end);
            assert_eq!(input.read(100).await, Ok(Vec::new()), "the end");
            assert_eq!(input.read(100).await, Ok(Vec::new()), "still the end");
        });
    }
}
