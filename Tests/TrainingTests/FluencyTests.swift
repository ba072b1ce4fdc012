import Foundation
import Inference
import Preference
import Testing
import Training
import Wire

@Suite struct FluencyTests {
    // MARK: The gate's maths

    @Test("the gate stays in [1 − w, 1], and w = 0 is exactly 1 whatever f is")
    func gateBounds() {
        for w in [0.0, 0.25, 0.5, 1.0] {
            for f in [-1000.0, -20, -6, -4.5, -3, -2, 0, 5, .infinity, -.infinity, .nan] {
                let g = FluencyGate.gate(f: f, reference: -3, weight: w)
                #expect(g >= 1 - w - 1e-12 && g <= 1 + 1e-12, "w \(w) f \(f): \(g)")
                if w == 0 { #expect(g == 1) }
            }
        }
        // Far below the reference the gate is at its floor; at or above f_ref − 1.5 it is 1.
        #expect(abs(FluencyGate.gate(f: FluencyGate.guardedLogProb, reference: -3, weight: 0.8) - 0.2) < 1e-9)
        #expect(FluencyGate.gate(f: -4.5, reference: -3, weight: 0.8) == 1)
        #expect(FluencyGate.gate(f: -3, reference: -3, weight: 0.8) == 1)
        // Out-of-range weights are clamped.
        #expect(FluencyGate.gate(f: -1000, reference: -3, weight: 7) == FluencyGate.gate(f: -1000, reference: -3,
                                                                                         weight: 1))
        #expect(FluencyGate.gate(f: -1000, reference: -3, weight: -1) == 1)
    }

    @Test("the gate is non-decreasing in f, strictly below f_ref − 1.5, and its formula holds there")
    func gateMonotonic() {
        let w = 0.6, reference = -2.0
        var previous = -Double.infinity
        var f = -15.0
        while f <= 2 {
            let g = FluencyGate.gate(f: f, reference: reference, weight: w)
            #expect(g >= previous)
            if f < reference - FluencyGate.margin - 0.01 { #expect(g > previous) }
            let expected = (1 - w) + w * min(1, 2 / (1 + exp(-2 * (f - reference + 1.5))))
            #expect(abs(g - expected) < 1e-12)
            previous = g
            f += 0.25
        }
    }

    // MARK: The guards

    @Test("the guards: under 8 tokens or more than half the 3-grams repeated is degenerate")
    func guards() {
        let varied: [Int32] = Array(1...12)
        #expect(FluencyGate.repetition(varied) == 0)
        #expect(!FluencyGate.isDegenerate(varied))
        #expect(FluencyGate.isDegenerate(Array(1...7)))
        #expect(!FluencyGate.isDegenerate(Array(1...8)))
        let loop = [Int32](repeating: 5, count: 20)
        #expect(FluencyGate.repetition(loop) > 0.9)
        #expect(FluencyGate.isDegenerate(loop))
        let cycle: [Int32] = (0..<24).map { Int32($0 % 3) }  // "a b c a b c …"
        #expect(FluencyGate.repetition(cycle) > 0.5)
        #expect(FluencyGate.isDegenerate(cycle))
        #expect(FluencyGate.repetition([1, 2]) == 0)
        #expect(FluencyGate.guarded(meanLogProb: -2, tokens: loop) == FluencyGate.guardedLogProb)
        #expect(FluencyGate.guarded(meanLogProb: -2, tokens: varied) == -2)
    }

    // MARK: Scoring with the tiny model

    @Test("teacher-forced f equals the decoder's own log-probability of its greedy answer")
    func teacherForcedMatchesDecode() throws {
        let experts = try TrainingTests.experts()
        let scorer = FluencyScorer(experts: experts)
        let results = try experts.decode([DecodeRequest(
            user: "a story", sessions: [(slot: 0, system: nil)], policy: .fixed([1, 0, 0, 0, 0, 0]),
            sampling: SamplingParameters(temperature: 0), record: true)], maxTokens: 12)
        let result = try #require(results.first)
        let tokens = result.tokens
        try #require(!tokens.isEmpty)
        let f = try #require(try scorer.meanLogProbs([(user: "a story", tokens: tokens)]).first)
        #expect(abs(f * Double(tokens.count) - result.logProb) < 1e-3 * Double(tokens.count))
        #expect(f < 0)
        #expect(try scorer.meanLogProbs([(user: "a story", tokens: [])]) == [FluencyGate.guardedLogProb])
    }

    @Test("the model's own answer gates higher than a short one or a loop, and the gate scales every dimension")
    func endToEnd() throws {
        let experts = try TrainingTests.experts()
        let prompts = TrainingTests.prompts
        var reward = ReferenceNormalisedReward(model: RewardModel(sentiment: SentimentAnalyzer(lexicon: [:])),
                                               prompts: prompts, cachePath: nil)
        reward.gate(weight: 0.8)
        try reward.prepare(promptIndices: Array(prompts.prompts.indices), prompts: prompts, experts: experts,
                           maxTokens: 16)
        var ungated = reward
        ungated.gate(weight: 0)
        var checked = 0
        for user in prompts.prompts {
            let reference = try #require(reward.references[user]).text
            let scorer = try #require(reward.fluency)
            let tokens = scorer.tokens(reference)
            guard !FluencyGate.isDegenerate(tokens) else { continue }
            checked += 1
            // A fragment of the answer, and its first three tokens over and over.
            let short = experts.tokenizer.decode(Array(tokens.prefix(4)), skipControlTokens: true)
            let loop = experts.tokenizer.decode(Array(repeating: Array(tokens.prefix(3)), count: 6).flatMap { $0 },
                                                skipControlTokens: true)
            try reward.prepareResponses([(user, reference), (user, short), (user, loop)])
            let own = reward.fluencyGate(reference, prompt: user)
            #expect(own == 1)
            for bad in [short, loop] {
                let g = reward.fluencyGate(bad, prompt: user)
                #expect(g < own)
                #expect(abs(g - 0.2) < 1e-9)
                let plain = ungated.normalised(bad, prompt: user)
                let gated = reward.normalised(bad, prompt: user)
                for (p, q) in zip(plain, gated) { #expect(abs(q - p * g) < 1e-12) }
            }
        }
        try #require(checked > 0, "at least one reference answer is not degenerate")
        // Off again: the rewards are as without the gate.
        reward.gate(weight: 0)
        let user = prompts.prompts[0]
        #expect(reward.normalised("a b", prompt: user) == ungated.normalised("a b", prompt: user))
    }
}
