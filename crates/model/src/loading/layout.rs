//! The tensors of an HF Llama checkpoint: names and shapes implied by a [`ModelConfig`].

use crate::config::ModelConfig;
use crate::error::{ModelError, Result};
use crate::weights::WeightMap;

/// Every tensor a Llama checkpoint for `config` holds, with its shape, in file order
/// (`lm_head.weight` only when the head is not tied).
///
/// # Shapes
/// Projections are `(out, in)` as in HF: `q_proj` `(heads·head_dim, hidden)`,
/// `k_proj`/`v_proj` `(kv_heads·head_dim, hidden)`, `o_proj` `(hidden, heads·head_dim)`,
/// `gate_proj`/`up_proj` `(intermediate, hidden)`, `down_proj` `(hidden, intermediate)`;
/// norms `(hidden,)`; embeddings and head `(vocab, hidden)`.
///
/// The list has `9 · num_layers + 2` or `+ 3` entries: for a config read from a file, call
/// [`check_weights`] first, so that a lying layer count is an error rather than a huge list.
pub fn llama_tensor_shapes(config: &ModelConfig) -> Vec<(String, Vec<usize>)> {
    layout(config).collect()
}

/// [`llama_tensor_shapes`], one tensor at a time.
fn layout(config: &ModelConfig) -> impl Iterator<Item = (String, Vec<usize>)> + '_ {
    let h = config.hidden_size;
    let q = config.num_heads * config.head_dim;
    let kv = config.num_kv_heads * config.head_dim;
    let ff = config.intermediate_size;
    let embed = (
        "model.embed_tokens.weight".to_string(),
        vec![config.vocab_size, h],
    );
    let layers = (0..config.num_layers).flat_map(move |i| {
        let p = format!("model.layers.{i}");
        let layer: [(&str, Vec<usize>); 9] = [
            ("input_layernorm", vec![h]),
            ("self_attn.q_proj", vec![q, h]),
            ("self_attn.k_proj", vec![kv, h]),
            ("self_attn.v_proj", vec![kv, h]),
            ("self_attn.o_proj", vec![h, q]),
            ("post_attention_layernorm", vec![h]),
            ("mlp.gate_proj", vec![ff, h]),
            ("mlp.up_proj", vec![ff, h]),
            ("mlp.down_proj", vec![h, ff]),
        ];
        layer
            .into_iter()
            .map(move |(n, s)| (format!("{p}.{n}.weight"), s))
    });
    let norm = ("model.norm.weight".to_string(), vec![h]);
    let head = (!config.tie_word_embeddings)
        .then(|| ("lm_head.weight".to_string(), vec![config.vocab_size, h]));
    std::iter::once(embed)
        .chain(layers)
        .chain(std::iter::once(norm))
        .chain(head)
}

/// Checks that `weights` holds every tensor of `config` with the right shape; the error
/// names the file, the tensor and both shapes. Stops at the first missing tensor, without
/// listing the layout first: a config claiming 2^40 layers fails at the first layer the
/// weights lack.
pub fn check_weights(config: &ModelConfig, weights: &WeightMap) -> Result<()> {
    for (name, shape) in layout(config) {
        weights.get_shaped(&name, &shape)?;
    }
    Ok(())
}

/// Errors on a tensor that is not part of `config`'s layout (a typo or a stray adapter).
pub(crate) fn check_no_extra<'a>(
    config: &ModelConfig,
    names: impl IntoIterator<Item = &'a str>,
    origin: &std::path::Path,
) -> Result<()> {
    let expected: std::collections::HashSet<String> = llama_tensor_shapes(config)
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    for name in names {
        if !expected.contains(name) {
            return Err(ModelError::tensor(
                origin,
                name,
                "is not a tensor of this Llama config (misnamed, an unmerged adapter, or a \
                 tied lm_head)",
            ));
        }
    }
    Ok(())
}
