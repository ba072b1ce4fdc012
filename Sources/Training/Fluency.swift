import Foundation
import Inference

/// The fluency gate: a factor in [1 − w, 1] that multiplies every dimension's normalised reward, so that an answer
/// the base model finds far less likely than its own answer to the prompt (nonsense, a fragment, a loop) cannot win
/// a rule-based reward by saying little.
///
/// f is the base model's mean log-probability per token of the answer given the prompt (teacher-forced, under the
/// chat template with its default system prompt) and f_ref the same for the reference answer (the base model's
/// greedy answer). The gate is
///
///     G = (1 − w) + w · min(1, 2σ(2 · (f − f_ref + margin)))
///
/// 1 while f ≥ f_ref − margin (margin 1.5 nats a token), falling towards 1 − w below. An answer under
/// `minimumTokens` tokens, or whose repeated n-grams exceed `maximumRepetition`, is scored with f =
/// `guardedLogProb` (the gate's floor), whatever the model thinks of it: a model assigns a loop a high likelihood.
/// The maths is pure; `FluencyScorer` runs the model.
public enum FluencyGate {
    /// The tolerated shortfall of f below f_ref, in nats per token.
    public static let margin = 1.5
    /// Answers shorter than this (in tokens) get `guardedLogProb`.
    public static let minimumTokens = 8
    /// The n of the repetition guard (token n-grams).
    public static let repetitionOrder = 3
    /// The share of repeated n-grams above which an answer gets `guardedLogProb`.
    public static let maximumRepetition = 0.5
    /// The f of a guarded answer: low enough that the gate is at its floor 1 − w.
    public static let guardedLogProb = -1000.0

    /// The gate G for an answer's f against the reference's f_ref, at weight `weight` (clamped to [0, 1]; 0 gives
    /// exactly 1). A NaN f counts as `guardedLogProb`.
    public static func gate(f: Double, reference: Double, weight: Double) -> Double {
        let w = min(max(weight.isNaN ? 0 : weight, 0), 1)
        guard w > 0 else { return 1 }
        let x = f.isNaN ? guardedLogProb : f
        let s = 2 * (x - reference + margin)
        let pass = min(1, 2 / (1 + exp(-s)))
        return (1 - w) + w * (pass.isNaN ? 0 : pass)
    }

    /// The share of an answer's token n-grams that repeat an earlier one: (n-grams − distinct) / n-grams; 0 when
    /// the answer has no n-gram.
    public static func repetition(_ tokens: [Int32], order: Int = repetitionOrder) -> Double {
        let n = max(order, 1)
        guard tokens.count >= n else { return 0 }
        var seen = Set<[Int32]>()
        let total = tokens.count - n + 1
        for i in 0..<total { seen.insert(Array(tokens[i..<(i + n)])) }
        return Double(total - seen.count) / Double(total)
    }

    /// Whether the guards replace the answer's f by `guardedLogProb`: too short, or too repetitive.
    public static func isDegenerate(_ tokens: [Int32]) -> Bool {
        tokens.count < minimumTokens || repetition(tokens) > maximumRepetition
    }

    /// f after the guards: `guardedLogProb` for a degenerate answer, else `meanLogProb`.
    public static func guarded(meanLogProb: Double, tokens: [Int32]) -> Double {
        isDegenerate(tokens) ? guardedLogProb : meanLogProb
    }
}

/// Scores answers' fluency with the base model: the mean log-probability per token of each answer given its
/// prompt, teacher-forced (all answers of a call advance together, one batched forward pass per token), cached by
/// (prompt, answer). The guards of `FluencyGate` are applied: a degenerate answer is not run at all.
public final class FluencyScorer: @unchecked Sendable {
    // Safe to share: the cache is guarded by `lock`; the model serialises its own forward passes.

    /// The experts whose model, tokenizer and chat template score (the base model: no adapter, no bias).
    public let experts: InProcessExperts
    private let lock = NSLock()
    private var cache: [String: Double] = [:]

    /// Creates a scorer on the experts' base model.
    public init(experts: InProcessExperts) { self.experts = experts }

    private static func key(_ user: String, _ text: String) -> String { user + "\u{0}" + text }

    /// The answer's tokens as the scorer reads them (the text re-encoded, special tokens as text).
    public func tokens(_ text: String) -> [Int32] { experts.tokenizer.encode(text, parseSpecial: false) }

    /// The cached plain mean log-probability (no guards) of an answer, if scored before.
    public func cached(user: String, text: String) -> Double? {
        lock.lock()
        defer { lock.unlock() }
        return cache[Self.key(user, text)]
    }

    /// f of each (prompt, answer), in order: after the guards (`guarded`, the default; a degenerate answer is not
    /// run) or the model's plain mean log-probability (for a reference answer, which is what it is however short).
    /// The answers are the texts re-encoded; answers scored before come from the cache.
    public func score(_ items: [(user: String, text: String)], guarded: Bool = true) throws(TrainingError)
        -> [Double]
    {
        var queued = Set<String>()
        var run: [(user: String, text: String, tokens: [Int32])] = []
        for item in items {
            let key = Self.key(item.user, item.text)
            guard cached(user: item.user, text: item.text) == nil, !queued.contains(key) else { continue }
            let answer = tokens(item.text)
            if guarded && FluencyGate.isDegenerate(answer) { continue }
            queued.insert(key)
            run.append((user: item.user, text: item.text, tokens: answer))
        }
        let means = try meanLogProbs(run.map { (user: $0.user, tokens: $0.tokens) })
        lock.lock()
        for (item, f) in zip(run, means) { cache[Self.key(item.user, item.text)] = f }
        lock.unlock()
        return items.map { item in
            if guarded && FluencyGate.isDegenerate(tokens(item.text)) { return FluencyGate.guardedLogProb }
            return cached(user: item.user, text: item.text) ?? FluencyGate.guardedLogProb
        }
    }

    /// The base model's plain mean log-probability per token of each answer (tokens) given its prompt under the
    /// chat template's default system prompt, teacher-forced, no guards, no cache; an empty answer (or one the
    /// context leaves no room for) gets `FluencyGate.guardedLogProb`. An answer longer than the context is cut.
    public func meanLogProbs(_ items: [(user: String, tokens: [Int32])]) throws(TrainingError) -> [Double] {
        struct Pending {
            var index: Int
            var cache: KVCache
            var answer: [Int32]
            var fed = 0
            var total = 0.0
        }
        var out = [Double](repeating: FluencyGate.guardedLogProb, count: items.count)
        var pending: [Pending] = []
        var inputs: [[Int32]] = []
        let context = experts.model.configuration.contextLength
        for (i, item) in items.enumerated() {
            let prompt = try experts.sessionPrompt(system: nil, user: item.user)
            let answer = Array(item.tokens.prefix(max(context - prompt.count, 0)))
            guard !answer.isEmpty else { continue }
            let cache: KVCache
            do {
                cache = try experts.model.makeCache(capacity: prompt.count + answer.count)
            } catch {
                throw .inference("\(error)")
            }
            pending.append(Pending(index: i, cache: cache, answer: answer))
            inputs.append(prompt)
        }
        let vocab = experts.model.vocabularySize
        var active = Array(pending.indices)
        var logits: [Float] = []
        while !active.isEmpty {
            let batch = active.map { (cache: pending[$0].cache, tokens: inputs[$0]) }
            do {
                try experts.model.forward(batch, into: &logits)
            } catch {
                throw .inference("\(error)")
            }
            var next: [Int] = []
            for (row, p) in active.enumerated() {
                let target = Int(pending[p].answer[pending[p].fed])
                let lp = logits.withUnsafeBufferPointer { all in
                    Self.logSoftmax(UnsafeBufferPointer(rebasing: all[(row * vocab)..<((row + 1) * vocab)]),
                                    at: target)
                }
                pending[p].total += lp
                pending[p].fed += 1
                if pending[p].fed < pending[p].answer.count {
                    inputs[p] = [pending[p].answer[pending[p].fed - 1]]
                    next.append(p)
                }
            }
            active = next
        }
        for p in pending { out[p.index] = p.total / Double(p.answer.count) }
        return out
    }

    /// log softmax(row)[target], in Double; −∞ for a target outside the row.
    static func logSoftmax(_ row: UnsafeBufferPointer<Float>, at target: Int) -> Double {
        guard target >= 0, target < row.count else { return -.infinity }
        var peak = -Float.infinity
        for x in row where x > peak { peak = x }
        var sum = 0.0
        for x in row { sum += Double(exp(x - peak)) }
        return Double(row[target] - peak) - log(sum)
    }
}
