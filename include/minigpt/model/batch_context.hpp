// minigpt::batch_context: many sequences over one model, decoded together (llama.cpp's
// llama_context with n_seq_max > 1 and llama_batch).
//
// decode(batch) runs one forward pass over tokens of any mix of sequences: prompt chunks and
// single decode tokens side by side. Every weight matrix is read once for the whole batch (the
// matrix-matrix kernels, as a prefill), and each token attends over its own sequence's keys in
// the paged KV cache (model/paged_kv_cache.hpp, kernels/attention_paged.hpp). So eight
// sequences decoding one token each cost about one 8-token prefill, not eight 1-token decodes.
//
// n_ctx is the number of positions over all sequences (llama-server's -c): the cache has
// ceil(n_ctx / block_size) blocks plus one per sequence, so any split of n_ctx positions over
// the sequences fits whatever their lengths' remainders. seq_cp forks a sequence by sharing its
// blocks (copy-on-write), seq_rm truncates or clears one and frees its blocks.
//
// Positions within a sequence are contiguous: a token of sequence s must sit at s's next
// position (n_pos(s), then n_pos(s)+1 for its next token in the same batch, ...). LoRA
// adapters apply to every sequence of a decode (set_adapters). A hidden-state tap (params().tap,
// as context's) captures the state of every token of a batch, row i for token i, whatever its
// sequence (kNN-LM queries, embeddings). Unlike context, a batch_context has no inspection hooks or
// layer callbacks (those stay on the one-sequence context, whose API and speed this class does not
// touch). Not thread-safe; one batch_context serves all sequences from one thread.
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "minigpt/core/error.hpp"
#include "minigpt/kernels/attention_paged.hpp"
#include "minigpt/model/context.hpp"
#include "minigpt/model/paged_kv_cache.hpp"

namespace minigpt {

// The tokens of one batch_context::decode (llama_batch with one sequence id per token): token i
// goes to sequence seq_id[i] at position pos[i]; logits[i] != 0 asks for its logits.
struct batch {
    std::vector<std::int32_t> token;   // (n_tokens)
    std::vector<std::int64_t> pos;     // (n_tokens)
    std::vector<std::int32_t> seq_id;  // (n_tokens)
    std::vector<std::uint8_t> logits;  // (n_tokens)

    void add(std::int32_t id, std::int64_t position, std::int32_t seq, bool want_logits) {
        token.push_back(id);
        pos.push_back(position);
        seq_id.push_back(seq);
        logits.push_back(want_logits ? 1 : 0);
    }
    void clear() {
        token.clear();
        pos.clear();
        seq_id.clear();
        logits.clear();
    }
    std::int64_t size() const noexcept { return static_cast<std::int64_t>(token.size()); }
};

struct batch_context_params {
    std::int64_t n_ctx = 0;         // positions over all sequences; 0: as context_params (training context, at most 4096)
    std::int32_t n_seq_max = 1;     // sequence ids 0..n_seq_max-1
    std::int64_t n_batch = 512;     // tokens per forward pass (llama.cpp's n_ubatch); larger batches run in pieces
    std::int64_t block_size = 16;   // positions per KV block
    dtype kv_type = dtype::f32;     // f32 or f16
    int n_threads = 0;              // 0: physical cores
    bool repack = true;             // as context_params::repack
    hidden_tap tap = hidden_tap::none;  // hidden state captured for every token of a batch (as context_params::tap)
};

namespace detail {

// Stores the batch's keys and values at each token's pool row and attends through the block
// tables: the other_kv of batch_context's layer passes.
class paged_attention final : public kv_attention {
public:
    paged_kv_cache* kv = nullptr;
    const std::int64_t* rows = nullptr;                      // (n_tokens) pool row each token writes
    const std::span<const std::int32_t>* tables = nullptr;  // (n_tokens) block table of each token's sequence

    void attend(const layer_pass& p, const float* q, const float* k, const float* v, float* out) const override {
        const auto& c = p.c;
        const std::int64_t kv_dim = c.kv_dim();
        for (std::int64_t t = 0; t < p.n_tokens; ++t) kv->store_row(p.layer, rows[t], k + t * kv_dim, v + t * kv_dim);
        kernels::attention_params a;
        a.n_heads = c.n_head;
        a.n_kv_heads = c.n_head_kv;
        a.head_dim = c.head_dim;
        a.scale = c.query_scale();
        a.softcap = c.attn_softcap;
        a.window = c.window(p.layer);
        a.kv_type = kv->type();
        a.positions = p.s.pos.data();
        a.n_threads = p.n_threads;
        const kernels::paged_kv pool{kv->k(p.layer), kv->v(p.layer), kv->block_size(), kv->n_blocks(), tables};
        kernels::attention_paged(a, pool, q, out, p.n_tokens);
    }
};

}  // namespace detail

class batch_context {
public:
    explicit batch_context(std::shared_ptr<const model> m, batch_context_params p = {}) : model_(std::move(m)), params_(p) {
        if (!model_) throw error("batch_context: null model");
        const auto& c = model_->config();
        if (params_.n_ctx <= 0) params_.n_ctx = c.n_ctx_train > 0 ? std::min(c.n_ctx_train, k_default_n_ctx) : k_default_n_ctx;
        if (params_.n_ctx > (1 << 24)) throw error("batch_context: n_ctx too large");
        if (params_.n_seq_max < 1 || params_.n_seq_max > 65536)
            throw error("batch_context: n_seq_max must be in [1, 65536], got " + std::to_string(params_.n_seq_max));
        if (params_.block_size < 1 || params_.block_size > 4096)
            throw error("batch_context: block_size must be in [1, 4096], got " + std::to_string(params_.block_size));
        params_.n_batch = std::clamp<std::int64_t>(params_.n_batch, 1, 1 << 16);
        const std::int64_t n_blocks = (params_.n_ctx + params_.block_size - 1) / params_.block_size + params_.n_seq_max;
        check_kv_fits_memory(c, context_params{.n_ctx = n_blocks * params_.block_size, .kv_type = params_.kv_type},
                             available_memory_bytes());
        kv_ = paged_kv_cache(c.n_layer, c.kv_dim(), params_.kv_type, n_blocks, params_.block_size, params_.n_seq_max);
        matrices_ = detail::shared_matrices(model_, params_.n_threads,
                                            params_.repack ? kernels::pack_policy::when_faster : kernels::pack_policy::never);
        state_ = forward_state(c, params_.n_batch, model_->arch().ffn_up_mult * c.n_ff);
        // RoPE factors as context chooses them, with the context of one sequence being n_ctx / n_seq_max
        // (llama.cpp's n_ctx_per_seq).
        const auto& w = model_->weights();
        const std::int64_t n_ctx_seq = params_.n_ctx / params_.n_seq_max;
        const tensor& factors = !w.rope_freqs.empty() ? w.rope_freqs
                                : n_ctx_seq > (c.n_ctx_orig > 0 ? c.n_ctx_orig : c.n_ctx_train) ? w.rope_long
                                                                                                  : w.rope_short;
        rope_factors_ = factors.empty() ? nullptr : factors.data<float>();
        final_ = tensor::empty(dtype::f32, {params_.n_batch, c.n_embd});  // (n_batch, n_embd) final normed rows that want logits
        rows_.resize(static_cast<std::size_t>(params_.n_batch));
        tables_.resize(static_cast<std::size_t>(params_.n_batch));
        grow_index_.assign(static_cast<std::size_t>(params_.n_seq_max), -1);
        attention_.kv = &kv_;
        attention_.rows = rows_.data();
        attention_.tables = tables_.data();
    }

    batch_context(const batch_context&) = delete;
    batch_context& operator=(const batch_context&) = delete;

    const model& get_model() const noexcept { return *model_; }
    std::shared_ptr<const model> model_ptr() const noexcept { return model_; }
    const batch_context_params& params() const noexcept { return params_; }
    std::int64_t n_ctx() const noexcept { return params_.n_ctx; }
    std::int32_t n_seq_max() const noexcept { return params_.n_seq_max; }
    std::int64_t n_vocab() const noexcept { return model_->config().n_vocab; }
    void set_threads(int n_threads) noexcept { params_.n_threads = n_threads; }
    void set_tap(hidden_tap tap) noexcept { params_.tap = tap; }
    // LoRA adapters (model/lora.hpp) for the following decode() calls, as context::set_adapters; the
    // engine runs sequences of different adapter sets as separate decodes of one step. Keys and
    // values already cached keep the adapters they were computed with.
    void set_adapters(std::vector<lora_binding> adapters) {
        adapters_.set(*model_, std::move(adapters), params_.n_batch);
    }
    const std::vector<lora_binding>& adapters() const noexcept { return adapters_.bindings(); }

    // Runs the model over every token of `b` (see the top of this file for the rules on positions).
    // Bad tokens, positions or sequence ids, or too few free blocks, throw before anything changes.
    void decode(const batch& b) {
        const auto& c = model_->config();
        const std::int64_t n = b.size();
        if (n == 0) throw error("batch_context::decode: empty batch");
        if (b.pos.size() != b.token.size() || b.seq_id.size() != b.token.size() || b.logits.size() != b.token.size())
            throw error("batch_context::decode: token, pos, seq_id and logits differ in length");
        for (const auto& g : grow_) grow_index_[static_cast<std::size_t>(g.first)] = -1;  // left by the last call
        grow_.clear();
        for (std::int64_t i = 0; i < n; ++i) {
            const auto u = static_cast<std::size_t>(i);
            const std::int32_t id = b.token[u], seq = b.seq_id[u];
            if (id < 0 || id >= c.n_vocab)
                throw error("batch_context::decode: token " + std::to_string(i) + " has id " + std::to_string(id) + " outside [0, " +
                            std::to_string(c.n_vocab) + ")");
            if (seq < 0 || seq >= params_.n_seq_max)
                throw error("batch_context::decode: token " + std::to_string(i) + " has sequence id " + std::to_string(seq) +
                            " outside [0, " + std::to_string(params_.n_seq_max) + ")");
            auto& k = grow_index_[static_cast<std::size_t>(seq)];
            if (k < 0) {
                k = static_cast<std::int32_t>(grow_.size());
                grow_.emplace_back(seq, 0);
            }
            auto& g = grow_[static_cast<std::size_t>(k)];
            const std::int64_t next = kv_.n_pos(seq) + g.second;
            if (b.pos[u] != next)
                throw error("batch_context::decode: token " + std::to_string(i) + " of sequence " + std::to_string(seq) +
                            " is at position " + std::to_string(b.pos[u]) + ", expected " + std::to_string(next) +
                            " (positions of a sequence are contiguous)");
            if (c.learned_positions && next >= c.n_ctx_train)
                throw error("batch_context::decode: position " + std::to_string(next) + " exceeds the " +
                            std::to_string(c.n_ctx_train) + " learned positions of this " + c.arch_name + " model");
            ++g.second;
        }
        kv_.grow(grow_);  // all-or-nothing

        out_row_.assign(static_cast<std::size_t>(n), -1);
        n_outputs_ = 0;
        for (std::int64_t i = 0; i < n; ++i)
            if (b.logits[static_cast<std::size_t>(i)]) out_row_[static_cast<std::size_t>(i)] = n_outputs_++;
        logits_.resize(static_cast<std::size_t>(n_outputs_ * c.n_vocab));  // grows once, then reuses capacity
        tap_.resize(params_.tap == hidden_tap::none ? 0 : static_cast<std::size_t>(n * c.n_embd));
        for (std::int64_t done = 0; done < n; done += params_.n_batch) forward_chunk(b, done, std::min(params_.n_batch, n - done));
    }

    // Logits of token i of the last decode()'s batch (which must have asked for them): (n_vocab).
    std::span<const float> logits_ith(std::int64_t i) const {
        if (i < 0 || i >= static_cast<std::int64_t>(out_row_.size()) || out_row_[static_cast<std::size_t>(i)] < 0)
            throw error("batch_context::logits_ith: token " + std::to_string(i) + " of the last batch has no logits");
        return std::span<const float>(logits_).subspan(static_cast<std::size_t>(out_row_[static_cast<std::size_t>(i)] * n_vocab()),
                                                       static_cast<std::size_t>(n_vocab()));
    }
    // Hidden states captured at params().tap for every token of the last decode(), in batch order:
    // (n_tokens, n_embd); empty without a tap.
    std::span<const float> tap_output() const noexcept { return tap_; }
    std::span<const float> tap_ith(std::int64_t i) const {
        const std::int64_t n_embd = model_->config().n_embd;
        if (i < 0 || (i + 1) * n_embd > static_cast<std::int64_t>(tap_.size()))
            throw error("batch_context::tap_ith: token " + std::to_string(i) + " of the last batch has no captured state");
        return std::span<const float>(tap_).subspan(static_cast<std::size_t>(i * n_embd), static_cast<std::size_t>(n_embd));
    }
    // Every computed row, in batch order: (n_outputs, n_vocab).
    std::span<const float> logits() const noexcept { return logits_; }
    std::int64_t n_outputs() const noexcept { return n_outputs_; }

    // Sequences (llama_memory_seq_*): see paged_kv_cache.
    std::int64_t n_pos(std::int32_t seq) const { return kv_.n_pos(seq); }
    bool seq_rm(std::int32_t seq, std::int64_t p0 = -1, std::int64_t p1 = -1) { return kv_.seq_rm(seq, p0, p1); }
    void seq_cp(std::int32_t src, std::int32_t dst, std::int64_t p0 = -1, std::int64_t p1 = -1) { kv_.seq_cp(src, dst, p0, p1); }
    void clear() { kv_.clear(); }

    // Sequence `seq` (emptied first) takes positions [0, n) of a one-sequence cache of this model
    // and cache type (a context's kv()), copied, so a prompt prefilled in a context continues here.
    void seq_import(std::int32_t seq, const kv_cache& src, std::int64_t n) {
        check_compatible(src, n, "seq_import");
        kv_.seq_rm(seq, -1, -1);
        const std::pair<std::int32_t, std::int64_t> grow[] = {{seq, n}};
        kv_.grow(grow);
        for (std::int64_t l = 0; l < src.n_layer(); ++l) kv_.copy_in(seq, l, src.k(l), src.v(l), n);
    }
    // Copies positions [0, n) of `seq` into a one-sequence cache (e.g. a context's kv(), then
    // context::set_restored_positions(n)).
    void seq_export(std::int32_t seq, kv_cache& dst, std::int64_t n) const {
        check_compatible(dst, n, "seq_export");
        for (std::int64_t l = 0; l < dst.n_layer(); ++l) kv_.copy_out(seq, l, dst.k(l), dst.v(l), n);
    }
    kv_memory_usage memory() const { return kv_.usage(); }
    const paged_kv_cache& kv() const noexcept { return kv_; }

private:
    void check_compatible(const kv_cache& other, std::int64_t n, const char* fn) const {
        if (other.type() != kv_.type() || other.n_layer() != kv_.n_layer() || other.kv_dim() != kv_.kv_dim())
            throw error(std::string("batch_context::") + fn + ": the caches differ in type or shape");
        if (n < 0 || n > other.n_ctx())
            throw error(std::string("batch_context::") + fn + ": " + std::to_string(n) + " positions do not fit a cache of " +
                        std::to_string(other.n_ctx()));
    }

    // Tokens [i0, i0+n) of b, n <= n_batch; their cache rows are already reserved.
    void forward_chunk(const batch& b, std::int64_t i0, std::int64_t n) {
        const auto& c = model_->config();
        const auto& w = model_->weights();
        const int nt = params_.n_threads;
        float* x = state_.x.data<float>();  // (n, n_embd)
        for (std::int64_t t = 0; t < n; ++t) {
            const auto u = static_cast<std::size_t>(i0 + t);
            const std::int64_t pos = b.pos[u];
            state_.pos[static_cast<std::size_t>(t)] = pos;
            rows_[static_cast<std::size_t>(t)] = kv_.row_of(b.seq_id[u], pos);
            tables_[static_cast<std::size_t>(t)] = kv_.table(b.seq_id[u]);
            float* row = x + t * c.n_embd;
            quant::dequantize_row(w.token_embd.type(), w.token_embd.row_ptr(b.token[u]), row, c.n_embd);
            if (c.embd_scale > 0.0f) kernels::scale(row, c.embd_scale, c.n_embd);
            if (!w.position_embd.empty()) {
                float* pe = state_.xb.data<float>();
                quant::dequantize_row(w.position_embd.type(), w.position_embd.row_ptr(pos), pe, c.n_embd);
                kernels::add(row, row, pe, c.n_embd);
            }
        }
        float* tap = tap_.empty() ? nullptr : tap_.data() + i0 * c.n_embd;  // (n, n_embd) this chunk's rows
        float* ffn_tap = params_.tap == hidden_tap::ffn_input ? tap : nullptr;
        for (std::int64_t l = 0; l < c.n_layer; ++l) {
            layer_pass pass{c, w.layers[static_cast<std::size_t>(l)], *matrices_, l, no_cache_, state_, n, nt, rope_factors_,
                            l == c.n_layer - 1 ? ffn_tap : nullptr, adapters_.deltas()};
            pass.other_kv = &attention_;
            model_->arch().layer(pass);
        }
        // Final norm of the rows that want logits (consecutive output rows), then one output product.
        // A final_norm tap needs every row normed: into the tap, the output rows copied from there.
        auto final_norm = [&](float* dst, const float* src) {
            if (c.norm == norm_kind::layer)
                kernels::layernorm(dst, src, w.output_norm.data<float>(), w.output_norm_b.empty() ? nullptr : w.output_norm_b.data<float>(),
                                   c.n_embd, c.norm_eps);
            else
                kernels::rmsnorm(dst, src, w.output_norm.data<float>(), c.n_embd, c.norm_eps);
        };
        const bool tap_final = params_.tap == hidden_tap::final_norm;
        if (tap_final)
            for (std::int64_t t = 0; t < n; ++t) final_norm(tap + t * c.n_embd, x + t * c.n_embd);
        std::int64_t n_out = 0, first_out = -1;
        float* fin = final_.data<float>();  // (n_out, n_embd)
        for (std::int64_t t = 0; t < n; ++t) {
            const std::int64_t r = out_row_[static_cast<std::size_t>(i0 + t)];
            if (r < 0) continue;
            if (first_out < 0) first_out = r;
            float* dst = fin + n_out * c.n_embd;
            if (tap_final) std::copy(tap + t * c.n_embd, tap + (t + 1) * c.n_embd, dst);
            else final_norm(dst, x + t * c.n_embd);
            ++n_out;
        }
        if (n_out == 0) return;
        float* out = logits_.data() + first_out * c.n_vocab;
        project(*matrices_, -1, {{matrix_role::output, out}}, fin, n_out, nt, adapters_.deltas());
        if (c.final_softcap > 0.0f) kernels::softcap(out, c.final_softcap, n_out * c.n_vocab);
    }

    std::shared_ptr<const model> model_;
    std::shared_ptr<const model_matrices> matrices_;
    batch_context_params params_;
    paged_kv_cache kv_;
    kv_cache no_cache_;                       // layer_pass's one-sequence cache, unused (other_kv is set)
    detail::paged_attention attention_;
    forward_state state_;
    tensor final_;                            // (n_batch, n_embd)
    std::vector<float> logits_;               // (n_outputs, n_vocab)
    std::vector<float> tap_;                  // (n_tokens of the last batch, n_embd) when params_.tap is set
    std::vector<std::int64_t> out_row_;       // (n_tokens of the last batch) logits row of each token, or -1
    std::int64_t n_outputs_ = 0;
    std::vector<std::int64_t> rows_;          // (n_batch) pool row of each token of a chunk
    std::vector<std::span<const std::int32_t>> tables_;  // (n_batch) block table of each token of a chunk
    std::vector<std::pair<std::int32_t, std::int64_t>> grow_;  // (sequences of the last batch) new positions of each
    std::vector<std::int32_t> grow_index_;    // (n_seq_max) index of a sequence in grow_, or -1
    const float* rope_factors_ = nullptr;
    adapter_set adapters_;                    // LoRA adapters with their scales and low-rank terms (model/lora.hpp)
};

}  // namespace minigpt
