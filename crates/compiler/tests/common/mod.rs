//! Helpers shared by the integration tests.
#![allow(dead_code)]

use suf_compiler::report::GateCase;

/// Rounds each gate must take (the input opening included).
pub fn round_target(case: &GateCase) -> u64 {
    match case.name.as_str() {
        "tr" | "ars" | "ars_round" | "ars_gap" | "relu" | "max" | "relu_in" | "max_in" => 1,
        "relu_ars" | "gelu" | "gelu_tanh" | "silu" | "sigmoid" | "tanh" | "nexp" | "reciprocal" => {
            2
        }
        "gelu_in" | "gelu_tanh_in" | "silu_in" | "sigmoid_in" | "tanh_in" | "nexp_in"
        | "gelu_in_fold" => 2,
        "rescale_gelu" | "rescale_silu" => 3,
        "rsqrt" => 4,
        other => panic!("no round target for {other}"),
    }
}
