//! The round schedule: a pure function of the program's structure (never of values), so the
//! dealer writes keys in exactly the order the party executor consumes them.
//!
//! Level of a node: inputs are at level 0; a local step sits at the highest level of its
//! operands; an interactive step at one more than that. Round k opens, in one message per
//! direction, every interactive step of level k. Within a round, gates with the same name
//! form one FSS batch.

use crate::ir::{NodeId, Op, Program};

/// The schedule of a program.
#[derive(Clone, Debug)]
pub struct Schedule {
    /// Level of every node.
    pub level: Vec<u32>,
    /// `waves[k]` = the interactive steps opened in round k+1, in node order.
    pub waves: Vec<Vec<NodeId>>,
    /// For every node, how many steps consume it.
    pub uses: Vec<u32>,
}

/// A batch within a wave: one interactive step, or all gates of one name.
#[derive(Clone, Debug)]
pub enum Group {
    /// A single non-gate step.
    Single(NodeId),
    /// Gates sharing a key batch.
    Gates(String, Vec<NodeId>),
}

impl Schedule {
    /// Compute the schedule.
    pub fn of(p: &Program) -> Schedule {
        let mut level = vec![0u32; p.nodes.len()];
        let mut uses = vec![0u32; p.nodes.len()];
        let mut max = 0;
        for (i, n) in p.nodes.iter().enumerate() {
            let deps = n.op.deps();
            let mut l = 0;
            for d in &deps {
                l = l.max(level[d.0 as usize]);
                uses[d.0 as usize] += 1;
            }
            if n.op.is_interactive() {
                l += 1;
            }
            level[i] = l;
            max = max.max(l);
        }
        let mut waves = vec![Vec::new(); max as usize];
        for (i, n) in p.nodes.iter().enumerate() {
            if n.op.is_interactive() {
                waves[level[i] as usize - 1].push(NodeId(i as u32));
            }
        }
        Schedule { level, waves, uses }
    }

    /// Rounds of the program (excluding the client's input sharing and output reveal).
    pub fn rounds(&self) -> usize {
        self.waves.len()
    }

    /// The FSS batches of a wave, in order of first appearance.
    pub fn groups(p: &Program, wave: &[NodeId]) -> Vec<Group> {
        let mut out: Vec<Group> = Vec::new();
        for &id in wave {
            match &p.node(id).op {
                Op::Gate(_, g) => {
                    let name = g.name();
                    let found = out.iter_mut().find_map(|gr| match gr {
                        Group::Gates(n, v) if *n == name => Some(v),
                        _ => None,
                    });
                    match found {
                        Some(v) => v.push(id),
                        None => out.push(Group::Gates(name, vec![id])),
                    }
                }
                _ => out.push(Group::Single(id)),
            }
        }
        out
    }
}
