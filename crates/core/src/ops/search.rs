//! Finding models on the Hub: a search with Orchard's filters and badges, and
//! one model's details with its capability facts and memory estimate.

use std::collections::HashSet;

use orchard_hub::capabilities::{Capabilities, ModelFiles, detect};
use orchard_hub::client::{ModelSummary, SearchQuery};
use orchard_hub::{HubError, RepoId};

use super::{
    Capability, ErrorCode, Fit, ModelDetails, ModelFacts, ModelRequest, OpError, Orchard,
    RepoFileView, SearchRequest, SearchResult, SearchResults, supported_architectures,
};

/// The context length memory estimates assume: what a chat of some length
/// needs, short of the model's maximum, which few requests reach.
pub const DEFAULT_CONTEXT: u64 = 4096;
/// How many models the Hub is asked for; Orchard's filters then pick from them.
const HUB_PAGE: u32 = 100;
/// How many results a search returns.
const MAX_RESULTS: usize = 50;

/// Searches the Hub. The Hub filters by text and author and sorts; Orchard
/// filters the page by architecture, bits, capabilities and memory fit.
pub async fn search_models(
    orchard: &Orchard,
    input: SearchRequest,
) -> Result<SearchResults, OpError> {
    let non_blank = |s: Option<String>| s.map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
    let query = SearchQuery {
        text: non_blank(input.text),
        author: non_blank(input.author),
        sort: input.sort,
        filters: Vec::new(),
        pipeline_tag: None,
        limit: HUB_PAGE,
    };
    let page = orchard.hub().search(&query).await?;
    let budget = orchard.manager().options().memory_budget_bytes;
    let supported = supported_architectures();
    let downloaded = downloaded_repos(orchard);
    let architecture = non_blank(input.architecture).map(|a| a.to_lowercase());
    let models = page
        .models
        .into_iter()
        .map(|m| summarize(m, budget, &supported, &downloaded))
        .filter(|m| {
            architecture.as_deref().is_none_or(|a| {
                m.architecture.as_deref().map(str::to_lowercase).as_deref() == Some(a)
            }) && input.bits.is_none_or(|b| m.quantization_bits == Some(b))
                && input
                    .capabilities
                    .iter()
                    .all(|c| m.capabilities.contains(c))
                && (!input.fits_only || matches!(m.fit, Fit::Fits | Fit::Tight))
        })
        .take(MAX_RESULTS)
        .collect();
    Ok(SearchResults {
        models,
        memory_budget_bytes: budget,
    })
}

/// One search result, read from the listing alone (no extra requests).
fn summarize(
    model: ModelSummary,
    budget: u64,
    supported: &[&str],
    downloaded: &HashSet<String>,
) -> SearchResult {
    let size = model.used_storage;
    let files = ModelFiles::from_listing(
        model.config.as_ref(),
        &model.tags,
        model.pipeline_tag.as_deref(),
        size.unwrap_or(0),
    );
    let caps = detect(&files, supported);
    // A listing has no attention shapes: a tenth of the weights stands in
    // for the KV cache at the default context.
    let estimate = size.map(|s| s + s / 10);
    SearchResult {
        downloads: model.downloads,
        likes: model.likes,
        size_bytes: size,
        last_modified: model.last_modified.clone(),
        quantization_bits: caps
            .quantization
            .map(|q| q.bits)
            .or_else(|| bits_from_name(&model.id, &model.tags)),
        parameters: model.parameters(),
        capabilities: capabilities_of(&caps),
        supported: caps.supported,
        architecture: caps.model_type,
        gated: model.is_gated(),
        memory_estimate_bytes: estimate,
        fit: fit(estimate, budget),
        downloaded: downloaded.contains(&model.id),
        id: model.id,
    }
}

/// Quantization as repo names and tags say it (`-4bit`, `8-bit`, `-bf16`).
fn bits_from_name(id: &str, tags: &[String]) -> Option<u32> {
    let name = id.rsplit('/').next().unwrap_or(id).to_lowercase();
    let words = name
        .split(['-', '_', '.'])
        .map(str::to_string)
        .chain(tags.iter().map(|t| t.to_lowercase().replace('-', "")));
    for word in words {
        if let Some(bits) = word.strip_suffix("bit").and_then(|b| b.parse().ok()) {
            return Some(bits);
        }
        if matches!(
            word.as_str(),
            "bf16" | "fp16" | "f16" | "float16" | "bfloat16"
        ) {
            return Some(16);
        }
    }
    None
}

/// The badges of a model. "Vision" means Orchard takes its images: a model
/// with a vision tower of an architecture Orchard runs only as text
/// (Qwen3.5) does not get it.
fn capabilities_of(caps: &Capabilities) -> Vec<Capability> {
    let reads_images = caps
        .model_type
        .as_deref()
        .is_some_and(|t| orchard_engine::vision::IMAGE_ARCHITECTURES.contains(&t));
    [
        (caps.vision && reads_images, Capability::Vision),
        (caps.tool_use, Capability::ToolUse),
        (caps.reasoning, Capability::Thinking),
        (caps.embedding, Capability::Embeddings),
    ]
    .into_iter()
    .filter_map(|(has, c)| has.then_some(c))
    .collect()
}

/// The facts the window shows, from a capability reading.
pub(super) fn facts_of(caps: &Capabilities) -> ModelFacts {
    ModelFacts {
        architecture: caps.model_type.clone(),
        supported: caps.supported,
        parameters: caps.parameters,
        quantization_bits: caps.quantization.map(|q| q.bits),
        quantization_group_size: caps.quantization.map(|q| q.group_size),
        context_length: caps.context_length,
        kv_bytes_per_token: caps.kv_bytes_per_token,
        weight_bytes: caps.weight_bytes,
        capabilities: capabilities_of(caps),
    }
}

/// Weights plus the KV cache at the default context (or the model's own
/// maximum, when shorter).
pub(super) fn memory_estimate(caps: &Capabilities) -> Option<u64> {
    let context = caps
        .context_length
        .map_or(DEFAULT_CONTEXT, |c| c.min(DEFAULT_CONTEXT));
    caps.memory_estimate(context)
}

/// Fits within 80% of the budget, tight up to it, won't fit beyond.
pub(super) fn fit(estimate: Option<u64>, budget: u64) -> Fit {
    match estimate {
        None => Fit::Unknown,
        Some(bytes) if bytes <= budget / 5 * 4 => Fit::Fits,
        Some(bytes) if bytes <= budget => Fit::Tight,
        Some(_) => Fit::WontFit,
    }
}

/// The repo ids in the Hugging Face cache.
fn downloaded_repos(orchard: &Orchard) -> HashSet<String> {
    orchard
        .cache()
        .map(|cache| {
            cache
                .models()
                .into_iter()
                .map(|m| m.repo.to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// A model's details: the Hub's listing, its README, files and capability
/// facts. A gated model whose files the Hub refuses is still described, with
/// `needs_token` set and no facts.
pub async fn model_details(
    orchard: &Orchard,
    input: ModelRequest,
) -> Result<ModelDetails, OpError> {
    let repo = RepoId::parse(input.model.trim())
        .map_err(|e| OpError::new(ErrorCode::InvalidInput, format!("model: {e}")))?;
    let hub = orchard.hub();
    let info = hub.model_info(&repo, None).await?;
    let (caps, readme, needs_token) = match hub.model_files(&repo, &info).await {
        Ok(files) => {
            let caps = detect(&files, &supported_architectures());
            (Some(caps), files.readme, false)
        }
        Err(HubError::Auth(_)) => {
            // The card is often readable where the weights are not.
            let readme = hub
                .file_text(&repo, info.sha.as_deref(), "README.md")
                .await
                .ok();
            (None, readme, true)
        }
        Err(e) => return Err(e.into()),
    };
    // Without the config (a gated model), the weights' size stands in, as
    // in search results.
    let estimate = match caps.as_ref() {
        Some(caps) => memory_estimate(caps),
        None => Some(info.total_size + info.total_size / 10).filter(|&b| b > 0),
    };
    let budget = orchard.manager().options().memory_budget_bytes;
    Ok(ModelDetails {
        downloaded: downloaded_repos(orchard).contains(repo.as_str()),
        id: info.id,
        sha: info.sha,
        readme: readme.map(|r| without_front_matter(&r).to_string()),
        files: info
            .files
            .into_iter()
            .map(|f| RepoFileView {
                name: f.name,
                size_bytes: f.size,
            })
            .collect(),
        size_bytes: info.total_size,
        license: info.license,
        gated: info.gated,
        needs_token,
        downloads: info.downloads,
        likes: info.likes,
        last_modified: info.last_modified,
        facts: caps.as_ref().map(facts_of),
        memory_estimate_bytes: estimate,
        fit: fit(estimate, budget),
    })
}

/// A README without its leading `---` YAML block.
fn without_front_matter(readme: &str) -> &str {
    let trimmed = readme.trim_start_matches('\u{feff}');
    let Some(rest) = trimmed.strip_prefix("---") else {
        return trimmed;
    };
    let Some(end) = rest.find("\n---") else {
        return trimmed;
    };
    let after = &rest[end + 4..];
    after.trim_start_matches(['\r', '\n'])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vision_badge_is_for_models_orchard_reads_images_with() {
        let caps = |model_type: &str| Capabilities {
            model_type: Some(model_type.into()),
            supported: true,
            parameters: None,
            quantization: None,
            weight_bytes: 0,
            context_length: None,
            vision: true,
            audio: false,
            tool_use: true,
            reasoning: false,
            embedding: false,
            kv_bytes_per_token: None,
        };
        assert_eq!(
            capabilities_of(&caps("gemma3")),
            [Capability::Vision, Capability::ToolUse]
        );
        assert_eq!(capabilities_of(&caps("qwen3_5")), [Capability::ToolUse]);
    }

    #[test]
    fn bits_are_read_from_repo_names_and_tags() {
        assert_eq!(bits_from_name("mlx-community/Qwen3-4B-4bit", &[]), Some(4));
        assert_eq!(
            bits_from_name("mlx-community/Llama-3.2-1B-Instruct-8bit", &[]),
            Some(8)
        );
        assert_eq!(
            bits_from_name("mlx-community/gemma-3-1b-it-bf16", &[]),
            Some(16)
        );
        assert_eq!(bits_from_name("org/plain", &["6-bit".to_string()]), Some(6));
        assert_eq!(bits_from_name("org/plain", &[]), None);
    }

    #[test]
    fn fit_is_judged_against_the_budget() {
        assert_eq!(fit(Some(79), 100), Fit::Fits);
        assert_eq!(fit(Some(81), 100), Fit::Tight);
        assert_eq!(fit(Some(100), 100), Fit::Tight);
        assert_eq!(fit(Some(101), 100), Fit::WontFit);
        assert_eq!(fit(None, 100), Fit::Unknown);
    }

    #[test]
    fn front_matter_is_dropped_from_the_card() {
        assert_eq!(
            without_front_matter("---\nlicense: mit\n---\n# Title\n"),
            "# Title\n"
        );
        assert_eq!(
            without_front_matter("# No front matter"),
            "# No front matter"
        );
        assert_eq!(without_front_matter("---\nunclosed"), "---\nunclosed");
    }
}
