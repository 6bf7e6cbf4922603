//! Where the training graph starts with LoRA on a subset of layers; decode products of frozen
//! weights.

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

/// A frozen weight's decode product goes through panels (f32 on AVX-512) or the cached
/// transpose (anything else on the CPU) and equals the plain product; a trainable weight is
/// never prepared.
#[test]
fn decode_products_of_frozen_weights_equal_the_plain_product() -> Result<()> {
    use candle_core::DType;
    use layers::{packed_matmul, DecodeWeight};
    let dev = Device::Cpu;
    for dtype in [DType::F32, DType::F64] {
        let w = Tensor::randn(0f32, 1.0, (53, 19), &dev)?.to_dtype(dtype)?;
        let x = Tensor::randn(0f32, 1.0, (5, 19), &dev)?.to_dtype(dtype)?;
        let frozen = Param::new("w".into(), w.clone(), false)?;
        let got = packed_matmul(&frozen, &x, dtype)?.expect("a frozen CPU weight is prepared");
        let want = x.matmul(&w.t()?)?;
        let diff = (got - want)?.abs()?.max_all()?.to_dtype(DType::F64)?;
        assert!(diff.to_scalar::<f64>()? < 1e-4, "{dtype:?}");
        let panels = matches!(
            frozen.packed(dtype)?.as_deref(),
            Some(DecodeWeight::Panels(_))
        );
        assert_eq!(
            panels,
            dtype == DType::F32 && crate::ops::avx512_available(),
            "{dtype:?}"
        );
        let trainable = Param::new("w".into(), w, true)?;
        assert!(packed_matmul(&trainable, &x, dtype)?.is_none());
    }
    Ok(())
}
