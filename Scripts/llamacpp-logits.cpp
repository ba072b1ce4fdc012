// Prints llama.cpp's logits at the last position of token sequences, as a reference for mope's engine.
//
// Reads one sequence of token ids per line on stdin (space separated), runs each from an empty cache in one
// llama_decode call on the CPU, and prints one JSON line per sequence: {"top_ids":[...],"top_logits":[...]}
// with the `k` largest logits, largest first.
//
//     llamacpp-logits MODEL.gguf [k=20] [threads=1] < sequences.txt
//
// Built and driven by Scripts/llamacpp-logits.sh.
#include "llama.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <numeric>
#include <sstream>
#include <string>
#include <vector>

static void quiet(ggml_log_level level, const char * text, void *) {
    if (level == GGML_LOG_LEVEL_ERROR) fputs(text, stderr);
}

int main(int argc, char ** argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL.gguf [k=20] [threads=1] [LORA.gguf] < sequences.txt\n", argv[0]);
        return 2;
    }
    const int k = argc > 2 ? atoi(argv[2]) : 20;
    const int threads = argc > 3 ? atoi(argv[3]) : 1;

    llama_log_set(quiet, nullptr);
    llama_backend_init();
    llama_model_params mparams = llama_model_default_params();
    mparams.n_gpu_layers = 0;
    llama_model * model = llama_model_load_from_file(argv[1], mparams);
    if (!model) {
        fprintf(stderr, "cannot load %s\n", argv[1]);
        return 1;
    }
    const int n_vocab = llama_vocab_n_tokens(llama_model_get_vocab(model));
    llama_adapter_lora * adapter = nullptr;
    if (argc > 4) {
        adapter = llama_adapter_lora_init(model, argv[4]);
        if (!adapter) {
            fprintf(stderr, "cannot load the LoRA adapter %s\n", argv[4]);
            return 1;
        }
    }

    std::string line;
    while (std::getline(std::cin, line)) {
        std::istringstream in(line);
        std::vector<llama_token> tokens;
        for (long id; in >> id;) tokens.push_back((llama_token) id);
        if (tokens.empty()) continue;

        llama_context_params cparams = llama_context_default_params();
        cparams.n_ctx = std::max<uint32_t>(64, tokens.size() + 8);
        cparams.n_batch = cparams.n_ctx;
        cparams.n_ubatch = cparams.n_ctx;
        cparams.n_threads = threads;
        cparams.n_threads_batch = threads;
        llama_context * ctx = llama_init_from_model(model, cparams);
        if (!ctx) {
            fprintf(stderr, "cannot create a context\n");
            return 1;
        }
        if (adapter) {
            float scale = 1.0f;
            if (llama_set_adapters_lora(ctx, &adapter, 1, &scale) != 0) {
                fprintf(stderr, "cannot apply the LoRA adapter\n");
                return 1;
            }
        }
        if (llama_decode(ctx, llama_batch_get_one(tokens.data(), (int32_t) tokens.size())) != 0) {
            fprintf(stderr, "llama_decode failed\n");
            return 1;
        }
        const float * logits = llama_get_logits_ith(ctx, -1);
        std::vector<int> order(n_vocab);
        std::iota(order.begin(), order.end(), 0);
        const int top = std::min(k, n_vocab);
        std::partial_sort(order.begin(), order.begin() + top, order.end(),
                          [&](int a, int b) { return logits[a] > logits[b]; });
        printf("{\"top_ids\":[");
        for (int i = 0; i < top; i++) printf("%s%d", i ? "," : "", order[i]);
        printf("],\"top_logits\":[");
        for (int i = 0; i < top; i++) printf("%s%.5f", i ? "," : "", logits[order[i]]);
        printf("]}\n");
        fflush(stdout);
        llama_free(ctx);
    }
    llama_model_free(model);
    llama_backend_free();
    return 0;
}
