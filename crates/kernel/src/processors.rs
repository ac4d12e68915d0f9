//! The processors' fair share: which process runs next when more want to run than there are
//! processors, taking turns level by level in the budget tree.
//!
//! Each run of a process (one poll of its task) needs a turn. While there are fewer runs under
//! way than processors, a turn is given at once. Past that, the process waits in the tree of
//! budgets: every budget with waiting processes below it keeps a queue of turns, one entry for
//! its own process and one for each child whose subtree waits, and the next turn goes down the
//! tree taking the first entry of each queue, which then queues for the next pass (stride
//! scheduling with equal strides, so that an entry that leaves and comes back does not gain).
//! So a subtree of a
//! thousand busy processes gets the same share of turns as a sibling process that just woke,
//! which waits for at most one turn per sibling on each level, not for the thousand. Tasks
//! wait in this tree, not in the executor's queue, which stays as short as there are
//! processors. Uncontended, a turn costs a lock and two counters.
//!
//! Written here, not taken from a crate: the executor (tokio on the hosted platform, the
//! kernel's own on bare metal) runs whatever is woken, in order; the shares follow the
//! kernel's own budget tree, which no executor knows.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicI64, Ordering};
use core::task::Waker;

use crate::budget::Budget;
use crate::platform::Platform;

/// The least time between two preemptions: bounds what they cost running processes (a yield
/// each, about a microsecond) however often processes wake.
const PREEMPTION_INTERVAL: i64 = 100_000;

/// A budget's identity while it has waiters: its address (the node keeps the budget alive).
type Key = usize;

fn key(budget: &Arc<Budget>) -> Key {
    Arc::as_ptr(budget) as Key
}

/// One entry of a queue of turns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Entry {
    /// The budget's own process.
    Own,
    /// The subtree of a child budget.
    Child(Key),
}

/// A budget with waiters at or below it.
struct Node {
    budget: Arc<Budget>,
    /// Its own process's waker, while it waits.
    own: Option<Waker>,
    /// The entries waiting here, by `(pass, arrival, entry)`: the least pass goes first, and
    /// among equal passes the first to arrive. An entry's pass goes up by one at each turn it
    /// takes, so every entry takes one turn per pass.
    queue: BTreeSet<(u64, u64, Entry)>,
    /// The pass of the last turn taken here.
    pass: u64,
    /// Entries that took a turn in the current pass and left: if they come back within it,
    /// they join at the next pass, so leaving and coming back never jumps the queue.
    done: BTreeSet<Entry>,
}

impl Node {
    /// Queues `entry` at the current pass, or the next if it already had its turn in this one:
    /// one that waited for nothing (a process that slept) goes before those that took turns.
    fn join(&mut self, entry: Entry, arrival: u64) {
        let pass = self.pass + u64::from(self.done.contains(&entry));
        self.queue.insert((pass, arrival, entry));
    }

    /// Takes the first entry; `None` if none waits.
    fn take(&mut self) -> Option<(u64, Entry)> {
        let (pass, _, entry) = self.queue.pop_first()?;
        if pass > self.pass {
            self.pass = pass;
            self.done.clear();
        }
        Some((pass, entry))
    }

    fn remove(&mut self, entry: Entry) {
        self.queue.retain(|(_, _, queued)| *queued != entry);
    }
}

#[derive(Default)]
struct State {
    /// Turns given and not yet ended: runs under way, and woken processes not yet polled.
    busy: usize,
    /// Processes that have started and not ended: only they are given turns. A wake that comes
    /// after a process ended (a waker left in some object's queue) is ignored, so no turn is
    /// given that nobody takes.
    live: BTreeSet<Key>,
    /// Processes given a turn, woken to take it at their next poll. With `running`, at most
    /// `busy` (the processors' count) entries: vectors, scanned, which keep their room, where
    /// sets allocated and freed a node at nearly every turn (the round trip's hot path).
    granted: Vec<Key>,
    /// Processes taking their turn, and whether they were woken meanwhile (they then queue
    /// again when it ends: a process that yields at an epoch tick wakes itself).
    running: Vec<(Key, bool)>,
    /// Budgets with waiters at or below them.
    nodes: BTreeMap<Key, Node>,
    /// Counts arrivals, to order entries of one pass.
    arrivals: u64,
}

/// The processors' turns, shared by every process of a kernel.
pub(crate) struct Processors {
    count: usize,
    state: crate::sync::Mutex<State>,
}

/// How a process came to wait for a turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Waiting {
    /// It had a turn in the current pass of its queue, or it is running or already waits.
    Again,
    /// It comes to the queue fresh (it slept, or waited for a message) while every processor
    /// is taken: worth asking the running processes to yield now rather than at the next tick.
    Fresh,
}

/// A process's turn on a processor; ending it (dropping it) gives the next turn, and queues
/// the process again if it was woken during the turn.
#[must_use]
pub(crate) struct Turn<'a> {
    processors: &'a Processors,
    budget: &'a Arc<Budget>,
    /// The process's task, woken when its next turn comes.
    waker: Waker,
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let wakers = {
            let mut state = self.processors.state.lock();
            state.busy -= 1;
            if state.stop_running(key(self.budget)) == Some(true) {
                state.wait(self.budget, self.waker.clone());
            }
            self.processors.give_turns(&mut state)
        };
        wakers.into_iter().for_each(Waker::wake);
    }
}

impl Processors {
    /// Turns for `count` processors (at least one).
    pub(crate) fn new(count: usize) -> Self {
        Self { count: count.max(1), state: crate::sync::Mutex::new(State::default()) }
    }

    /// Turns given and not ended, and processes started and not ended: both 0 once every
    /// process has ended (a check that no turn was lost).
    pub(crate) fn in_use(&self) -> (usize, usize) {
        let state = self.state.lock();
        (state.busy, state.live.len())
    }

    /// The process of `budget` starts: it may be given turns until [`Self::forget`].
    pub(crate) fn start(&self, budget: &Arc<Budget>) {
        self.state.lock().live.insert(key(budget));
    }

    /// The process of `budget` has something to run: it gets a turn at once (`waker`, its
    /// task's, is woken to take it) if a processor is free and nobody waits, else it waits in
    /// the tree. A process already waiting, given a turn or running is not queued twice.
    pub(crate) fn wake(&self, budget: &Arc<Budget>, waker: &Waker) -> Waiting {
        let (waiting, granted) = self.ask(budget, waker);
        if granted {
            waker.wake_by_ref();
        }
        waiting
    }

    /// [`Self::wake`] for a process's task while it is being polled: a turn given at once is
    /// not signaled through `waker` (the task takes it with [`Self::begin`] in the same poll, and
    /// a task that woke itself would be polled once more for nothing, perhaps on another worker,
    /// woken across cores). Returns whether the turn was given.
    pub(crate) fn ask(&self, budget: &Arc<Budget>, waker: &Waker) -> (Waiting, bool) {
        let key = key(budget);
        let (waiting, granted) = {
            let mut state = self.state.lock();
            if !state.live.contains(&key) {
                return (Waiting::Again, false);
            }
            if let Some((_, woken)) = state.running.iter_mut().find(|(running, _)| *running == key)
            {
                *woken = true;
                return (Waiting::Again, false);
            }
            if state.granted.contains(&key) {
                return (Waiting::Again, false);
            }
            if let Some(node) = state.nodes.get_mut(&key)
                && let Some(own) = &mut node.own
            {
                own.clone_from(waker);
                return (Waiting::Again, false);
            }
            if state.busy < self.count && state.nodes.is_empty() {
                state.busy += 1;
                state.granted.push(key);
                (Waiting::Again, true)
            } else {
                (state.wait(budget, waker.clone()), false)
            }
        };
        (waiting, granted)
    }

    /// The turn given to the process of `budget`, if it was given one; `waker` is its task's.
    pub(crate) fn begin<'a>(&'a self, budget: &'a Arc<Budget>, waker: &Waker) -> Option<Turn<'a>> {
        let mut state = self.state.lock();
        let key = key(budget);
        if !state.take_granted(key) {
            return None;
        }
        state.running.push((key, false));
        Some(Turn { processors: self, budget, waker: waker.clone() })
    }

    /// Drops whatever the process of `budget` holds or waits for, at its end; later wakes of it
    /// are ignored.
    pub(crate) fn forget(&self, budget: &Arc<Budget>) {
        let wakers = {
            let mut state = self.state.lock();
            let key = key(budget);
            state.live.remove(&key);
            if state.take_granted(key) {
                state.busy -= 1;
            } else {
                state.leave(budget);
            }
            self.give_turns(&mut state)
        };
        wakers.into_iter().for_each(Waker::wake);
    }

    /// Gives free turns to the next waiters; returns their wakers, to wake outside the lock.
    fn give_turns(&self, state: &mut State) -> Vec<Waker> {
        let mut wakers = Vec::new();
        while state.busy < self.count
            && let Some((key, waker)) = state.next()
        {
            state.busy += 1;
            state.granted.push(key);
            wakers.push(waker);
        }
        wakers
    }
}

/// Asks running processes to yield at their next loop or call rather than at the next epoch
/// tick: for a process that woke while every processor is taken, and for a kill.
pub(crate) struct Preemption {
    platform: Arc<dyn Platform>,
    engine: wasmtime::Engine,
    /// When the last preemption was asked for.
    last: AtomicI64,
}

impl Preemption {
    pub(crate) fn new(platform: Arc<dyn Platform>, engine: wasmtime::Engine) -> Self {
        Self { platform, engine, last: AtomicI64::new(i64::MIN) }
    }

    /// Advances the engine's epoch, which every running store checks at each loop and call,
    /// unless that was done less than [`PREEMPTION_INTERVAL`] ago.
    pub(crate) fn request(&self) {
        let now = self.platform.now();
        let last = self.last.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= PREEMPTION_INTERVAL
            && self.last.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok()
        {
            self.engine.increment_epoch();
        }
    }
}

impl State {
    /// Takes `key`'s granted turn; whether it had one.
    fn take_granted(&mut self, key: Key) -> bool {
        let index = self.granted.iter().position(|granted| *granted == key);
        index.map(|index| self.granted.swap_remove(index)).is_some()
    }

    /// Ends `key`'s run; whether it was woken during it, if it was running.
    fn stop_running(&mut self, key: Key) -> Option<bool> {
        let index = self.running.iter().position(|(running, _)| *running == key)?;
        Some(self.running.swap_remove(index).1)
    }
    /// The root of the waiting tree: up from any waiting node (every ancestor of a waiting
    /// node has a node).
    fn root(&self) -> Option<Key> {
        let mut budget = &self.nodes.values().next()?.budget;
        while let Some(parent) = budget.parent()
            && self.nodes.contains_key(&key(parent))
        {
            budget = parent;
        }
        Some(key(budget))
    }

    /// Puts the process of `budget` in the tree, and its ancestors' subtrees in their queues.
    fn wait(&mut self, budget: &Arc<Budget>, waker: Waker) -> Waiting {
        self.arrivals += 1;
        let arrival = self.arrivals;
        let node = self.node(budget);
        node.own = Some(waker);
        let waiting = if node.done.contains(&Entry::Own) { Waiting::Again } else { Waiting::Fresh };
        node.join(Entry::Own, arrival);
        let mut child = budget;
        // Up the tree while each subtree has just started waiting.
        while self.nodes.get(&key(child)).is_some_and(|node| node.queue.len() == 1)
            && let Some(parent) = child.parent()
        {
            self.node(parent).join(Entry::Child(key(child)), arrival);
            child = parent;
        }
        waiting
    }

    /// Takes the process of `budget` out of the tree, and empty subtrees out of their queues.
    fn leave(&mut self, budget: &Arc<Budget>) {
        let Some(node) = self.nodes.get_mut(&key(budget)) else { return };
        if node.own.take().is_none() {
            return;
        }
        node.remove(Entry::Own);
        let mut child = budget;
        while self.nodes.get(&key(child)).is_some_and(|node| node.queue.is_empty()) {
            self.nodes.remove(&key(child));
            let Some(parent) = child.parent() else { break };
            if let Some(node) = self.nodes.get_mut(&key(parent)) {
                node.remove(Entry::Child(key(child)));
            }
            child = parent;
        }
    }

    /// The next waiter, taken out of the tree: down from the root, the first entry of each
    /// node's queue.
    fn next(&mut self) -> Option<(Key, Waker)> {
        let mut at = self.root()?;
        // The nodes passed on the way down, with the pass of the entry taken at each.
        let mut path = Vec::new();
        let waker = loop {
            let node = self.nodes.get_mut(&at)?;
            match node.take()? {
                (_, Entry::Own) => {
                    node.done.insert(Entry::Own);
                    break node.own.take()?;
                }
                (pass, Entry::Child(child)) => {
                    path.push((at, pass, child));
                    at = child;
                }
            }
        };
        let taken = at;
        // Back up: a subtree that still waits queues for the next pass; an empty one goes.
        let mut emptied = self.nodes.get(&at).is_some_and(|node| node.queue.is_empty());
        if emptied {
            self.nodes.remove(&at);
        }
        self.arrivals += 1;
        for (parent, pass, child) in path.into_iter().rev() {
            let node = self.nodes.get_mut(&parent)?;
            if emptied {
                node.done.insert(Entry::Child(child));
            } else {
                node.queue.insert((pass + 1, self.arrivals, Entry::Child(child)));
            }
            emptied = node.queue.is_empty();
            if emptied {
                self.nodes.remove(&parent);
            }
        }
        Some((taken, waker))
    }

    /// The node of `budget`, made if it has none.
    fn node(&mut self, budget: &Arc<Budget>) -> &mut Node {
        self.nodes.entry(key(budget)).or_insert_with(|| Node {
            budget: budget.clone(),
            own: None,
            queue: BTreeSet::new(),
            pass: 0,
            done: BTreeSet::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::Capacity;
    use alloc::task::Wake;
    use alloc::vec;
    use core::sync::atomic::AtomicUsize;

    /// A process's task, as the executor sees it: a waker that counts its wakes.
    struct Task {
        budget: Arc<Budget>,
        wakes: Arc<Count>,
        waker: Waker,
        seen: usize,
    }

    #[derive(Default)]
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    impl Task {
        fn new(budget: Arc<Budget>) -> Self {
            let wakes = Arc::new(Count::default());
            Self { budget, waker: Waker::from(wakes.clone()), wakes, seen: 0 }
        }

        /// Whether the task was woken (for its turn) since the last look.
        fn woken(&mut self) -> bool {
            let wakes = self.wakes.0.load(Ordering::Relaxed);
            core::mem::replace(&mut self.seen, wakes) < wakes
        }

        fn wake(&self, processors: &Processors) -> Waiting {
            processors.start(&self.budget);
            processors.wake(&self.budget, &self.waker)
        }
    }

    fn root() -> Arc<Budget> {
        Budget::root(&Capacity::default())
    }

    #[test]
    fn turns_are_given_at_once_while_processors_are_free() {
        let root = root();
        let mut tasks: Vec<Task> = (0..3).map(|_| Task::new(root.child().unwrap())).collect();
        let processors = Processors::new(2);
        assert_eq!(tasks[0].wake(&processors), Waiting::Again);
        assert_eq!(tasks[1].wake(&processors), Waiting::Again);
        assert!(tasks[0].woken() && tasks[1].woken(), "both are given a turn at once");
        assert_eq!(tasks[2].wake(&processors), Waiting::Fresh, "both processors are taken");
        assert!(!tasks[2].woken());
        let first = processors.begin(&tasks[0].budget, &tasks[0].waker).expect("its turn");
        assert!(processors.begin(&tasks[2].budget, &tasks[2].waker).is_none());
        drop(first);
        assert!(tasks[2].woken(), "the waiter is woken for the turn that ended");
        let second = processors.begin(&tasks[1].budget, &tasks[1].waker).expect("its turn");
        let third = processors.begin(&tasks[2].budget, &tasks[2].waker).expect("its turn");
        drop((second, third));
        let state = processors.state.lock();
        assert!(state.nodes.is_empty() && state.running.is_empty() && state.busy == 0);
    }

    #[test]
    fn a_process_woken_during_its_turn_queues_again_and_no_wake_is_lost() {
        let root = root();
        let mut tasks: Vec<Task> = (0..2).map(|_| Task::new(root.child().unwrap())).collect();
        let processors = Processors::new(1);
        tasks[0].wake(&processors);
        assert!(tasks[0].woken());
        let turn = processors.begin(&tasks[0].budget, &tasks[0].waker).unwrap();
        tasks[1].wake(&processors);
        // Woken twice while it runs (a message, then its own yield): queued once.
        tasks[0].wake(&processors);
        tasks[0].wake(&processors);
        drop(turn);
        assert!(tasks[1].woken() && !tasks[0].woken(), "the other went first");
        drop(processors.begin(&tasks[1].budget, &tasks[1].waker).unwrap());
        assert!(tasks[0].woken(), "then the one woken during its turn");
        drop(processors.begin(&tasks[0].budget, &tasks[0].waker).unwrap());
        assert!(!tasks[0].woken() && !tasks[1].woken());
    }

    /// Runs `turns` turns on one processor, every process busy (woken again during each of its
    /// turns, as an epoch yield does), and returns whose each turn was.
    fn order(tasks: &mut [Task], turns: usize) -> Vec<usize> {
        let processors = Processors::new(1);
        for task in tasks.iter() {
            task.wake(&processors);
        }
        let mut order = Vec::new();
        for _ in 0..turns {
            let woken: Vec<usize> =
                (0..tasks.len()).filter(|index| tasks[*index].woken()).collect();
            assert_eq!(woken.len(), 1, "one processor, one turn at a time");
            let task = &tasks[woken[0]];
            let turn = processors.begin(&task.budget, &task.waker).expect("its turn");
            task.wake(&processors);
            drop(turn);
            order.push(woken[0]);
        }
        order
    }

    #[test]
    fn a_busy_subtree_gets_one_share_however_many_processes_it_has() {
        let root = root();
        let parent = root.child().unwrap();
        let jail = parent.child().unwrap();
        let mut tasks = vec![Task::new(parent.child().unwrap())];
        tasks.extend((0..6).map(|_| Task::new(jail.child().unwrap())));
        tasks.push(Task::new(parent.clone()));
        let order = order(&mut tasks, 60);
        // The lone child (0), the parent itself (7) and the jail (1 to 6) take turns in turn.
        let count = |index| order.iter().filter(|turn| **turn == index).count();
        assert_eq!([count(0), count(7)], [20, 20], "{order:?}");
        assert!((1..=6).all(|index| (3..=4).contains(&count(index))), "{order:?}");
        for window in order.windows(3) {
            assert!(window.contains(&0) && window.contains(&7), "{order:?}");
        }
    }

    #[test]
    fn a_process_that_wakes_waits_for_at_most_one_turn_of_a_busy_sibling_subtree() {
        let root = root();
        let jail = root.child().unwrap();
        let mut busy: Vec<Task> = (0..100).map(|_| Task::new(jail.child().unwrap())).collect();
        let mut sleeper = Task::new(root.child().unwrap());
        let processors = Processors::new(1);
        for task in &busy {
            task.wake(&processors);
        }
        let mut turns = vec![0; busy.len()];
        for round in 0..300 {
            let wakes = round % 7 == 3;
            if wakes {
                assert_eq!(sleeper.wake(&processors), Waiting::Fresh);
            }
            for _ in 0..2 {
                if sleeper.woken() {
                    drop(processors.begin(&sleeper.budget, &sleeper.waker).expect("its turn"));
                    continue;
                }
                let index = (0..busy.len()).find(|index| busy[*index].woken()).unwrap();
                turns[index] += 1;
                let task = &busy[index];
                let turn = processors.begin(&task.budget, &task.waker).expect("its turn");
                task.wake(&processors);
                drop(turn);
            }
            if wakes {
                assert!(!sleeper.woken(), "round {round}: the sleeper had its turn");
                assert!(processors.begin(&sleeper.budget, &sleeper.waker).is_none());
            }
        }
        assert!(turns.iter().all(|turns| *turns >= 3), "every busy process ran: {turns:?}");
    }

    #[test]
    fn a_process_that_ends_while_waiting_or_given_a_turn_gives_its_place_back() {
        let root = root();
        let mut tasks: Vec<Task> = (0..3).map(|_| Task::new(root.child().unwrap())).collect();
        let processors = Processors::new(1);
        tasks[0].wake(&processors);
        let turn = processors.begin(&tasks[0].budget, &tasks[0].waker).unwrap();
        tasks[1].wake(&processors);
        tasks[2].wake(&processors);
        processors.forget(&tasks[1].budget);
        drop(turn);
        assert!(!tasks[1].woken() && tasks[2].woken(), "the turn skips the one that ended");
        // The third ends before it takes its turn: the turn goes back.
        processors.forget(&tasks[2].budget);
        tasks[0].woken();
        tasks[0].wake(&processors);
        assert!(tasks[0].woken(), "a free processor again");
    }

    #[test]
    fn a_wake_after_a_process_ended_gives_no_turn() {
        let root = root();
        let mut tasks: Vec<Task> = (0..2).map(|_| Task::new(root.child().unwrap())).collect();
        let processors = Processors::new(1);
        tasks[0].wake(&processors);
        assert!(tasks[0].woken());
        drop(processors.begin(&tasks[0].budget, &tasks[0].waker).unwrap());
        processors.forget(&tasks[0].budget);
        // A waker of the ended process, left in an object's queue, fires.
        assert_eq!(processors.wake(&tasks[0].budget, &tasks[0].waker), Waiting::Again);
        assert!(!tasks[0].woken(), "no turn for an ended process");
        // So the one processor is still free for the next.
        tasks[1].wake(&processors);
        assert!(tasks[1].woken(), "the processor was not lost");
        let state = processors.state.lock();
        assert!(state.granted.len() == 1 && state.busy == 1);
    }
}
