//! Where the training graph starts with LoRA on a subset of layers.

use candle_core::{Device, Tensor};

use super::*;

#[test]
fn frozen_layers_below_the_first_adapted_one_record_no_graph() -> Result<()> {
    let cfg = ModelConfig {
        num_layers: 4,
        ..ModelConfig::tiny(40)
    };
    let options = LlamaOptions {
        finetune: Finetune::Lora {
            config: LoraConfig {
                rank: 2,
                layers: Some(vec![3, 2]),
                ..LoraConfig::default()
            },
            seed: 1,
        },
        ..LlamaOptions::default()
    };
    let m = Llama::random(&cfg, 3, &Device::Cpu, options)?;
    assert_eq!(m.first_trainable_layer(), 2);
    let ids = Tensor::new(&[[1u32, 5, 7], [2, 3, 4]], &Device::Cpu)?;
    let mask: Vec<bool> = vec![true; 6];
    let mut cache = m.new_cache();
    let mut plan = cache.plan(&mask, 2, 3, Mode::Train)?;
    cache.prepare(&plan)?;
    let ctx = m.context(&mut plan, 2, 3, Mode::Train)?;
    let mut tracked = Vec::new();
    let out = m.run_layers(&ids, &ctx, &mut cache, &plan, &mut |i, x| {
        tracked.push((i, x.track_op()))
    })?;
    // The input of the first adapted layer (2) has no graph; the one above it does.
    assert_eq!(tracked, vec![(0, false), (1, false), (2, false), (3, true)]);
    assert!(out.track_op());

    // Full fine-tuning: the graph starts at the embedding.
    let full = Llama::random(
        &cfg,
        3,
        &Device::Cpu,
        LlamaOptions {
            finetune: Finetune::Full,
            ..LlamaOptions::default()
        },
    )?;
    assert_eq!(full.first_trainable_layer(), 0);
    let frozen = Llama::random(&cfg, 3, &Device::Cpu, LlamaOptions::default())?;
    assert_eq!(frozen.first_trainable_layer(), 4);
    Ok(())
}
