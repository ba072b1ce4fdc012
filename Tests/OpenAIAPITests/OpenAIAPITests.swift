import Foundation
import OpenAIAPI
import Testing
import Wire

private func parseChat(_ json: String) -> Result<ChatCompletionRequest, APIError> {
    do throws(APIError) { return .success(try ChatCompletionRequest.parse(Array(json.utf8))) } catch {
        return .failure(error)
    }
}

private func parseCompletion(_ json: String) -> Result<CompletionRequest, APIError> {
    do throws(APIError) { return .success(try CompletionRequest.parse(Array(json.utf8))) } catch {
        return .failure(error)
    }
}

/// The error of a failed parse (nil when it parsed).
private func failure<T>(_ result: Result<T, APIError>) -> APIError? {
    if case let .failure(error) = result { return error }
    return nil
}

private func object(_ bytes: [UInt8]) throws -> [String: Any] {
    try #require(try JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any])
}

@Suite("OpenAI request decoding")
struct RequestDecodingTests {
    @Test("a chat request carries its turns and every setting into the coordinator's request")
    func chat() throws {
        let request = try parseChat("""
            {"model": "mope", "messages": [{"role": "system", "content": "Be brief."},
              {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"},
              {"role": "user", "content": [{"type": "text", "text": "Why "}, {"type": "text", "text": "so?"}]}],
             "stream": true, "stream_options": {"include_usage": true}, "max_tokens": 12, "temperature": 0.5,
             "top_p": 0.9, "seed": 18446744073709551615, "stop": ["\\n", "."], "preference": "friendly, concise:2",
             "merge": "logit", "user": "ignored"}
            """).get()
        #expect(request.messages.map(\.role) == ["system", "user", "assistant", "user"])
        #expect(request.messages.last?.content == "Why so?")
        #expect(request.options.stream && request.options.includeUsage)
        let generate = request.generate
        #expect(generate.input == .chat(request.messages))
        #expect(generate.maxNewTokens == 12)
        #expect(generate.sampling == SamplingRequest(temperature: 0.5, topP: 0.9, seed: .max))
        #expect(generate.stop == ["\n", "."])
        #expect(generate.preference == "concise:2, friendly")
        #expect(generate.merge == .logit)
    }

    @Test("unset settings are left to the cluster's defaults")
    func defaults() throws {
        let generate = try parseChat(#"{"messages": [{"role": "user", "content": "Hi"}]}"#).get().generate
        #expect(generate.maxNewTokens == 0)
        #expect(generate.sampling == SamplingRequest())
        #expect(generate.merge == nil && generate.preference == "" && generate.stop.isEmpty)
    }

    @Test("the preference may be an object of dimension weights")
    func preferenceObject() throws {
        let request = try parseChat(#"{"messages":[{"role":"user","content":"Hi"}],"preference":{"friendly":1,"concise":2,"elementary":0}}"#).get()
        #expect(request.options.preference == "concise:2, friendly")
        #expect(failure(parseChat(#"{"messages":[{"role":"user","content":"Hi"}],"preference":{"funny":1}}"#))?.param
            == "preference.funny")
        #expect(failure(parseChat(#"{"messages":[{"role":"user","content":"Hi"}],"preference":{"concise":"a"}}"#))?.param
            == "preference.concise")
        #expect(failure(parseChat(#"{"messages":[{"role":"user","content":"Hi"}],"preference":"concise, informative"}"#))?.param
            == "preference")
        #expect(failure(parseChat(#"{"messages":[{"role":"user","content":"Hi"}],"preference":3}"#))?.param
            == "preference")
    }

    @Test("every malformed or wrong-typed input is a 400 naming the field", arguments: [
        ("{", "body"), ("[1]", "body"), ("", "body"), ("{}", "messages"), (#"{"messages": "hi"}"#, "messages"),
        (#"{"messages": []}"#, "messages"), (#"{"messages": [3]}"#, "messages[0]"),
        (#"{"messages": [{"content": "x"}]}"#, "messages[0].role"),
        (#"{"messages": [{"role": "tool", "content": "x"}]}"#, "messages[0].role"),
        (#"{"messages": [{"role": "user", "content": 5}]}"#, "messages[0].content"),
        (#"{"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}"#, "messages[0].content[0].type"),
        (#"{"messages": [{"role": "system", "content": "x"}]}"#, "messages"),
        (#"{"messages": [{"role": "user", "content": "x"}], "stream": "yes"}"#, "stream"),
        (#"{"messages": [{"role": "user", "content": "x"}], "stream": 1}"#, "stream"),
        (#"{"messages": [{"role": "user", "content": "x"}], "max_tokens": "10"}"#, "max_tokens"),
        (#"{"messages": [{"role": "user", "content": "x"}], "max_tokens": 0}"#, "max_tokens"),
        (#"{"messages": [{"role": "user", "content": "x"}], "max_tokens": 1.5}"#, "max_tokens"),
        (#"{"messages": [{"role": "user", "content": "x"}], "max_tokens": true}"#, "max_tokens"),
        (#"{"messages": [{"role": "user", "content": "x"}], "temperature": "hot"}"#, "temperature"),
        (#"{"messages": [{"role": "user", "content": "x"}], "temperature": 3}"#, "temperature"),
        (#"{"messages": [{"role": "user", "content": "x"}], "top_p": 0}"#, "top_p"),
        (#"{"messages": [{"role": "user", "content": "x"}], "seed": 1.5}"#, "seed"),
        (#"{"messages": [{"role": "user", "content": "x"}], "stop": 3}"#, "stop"),
        (#"{"messages": [{"role": "user", "content": "x"}], "stop": ["a", 3]}"#, "stop[1]"),
        (#"{"messages": [{"role": "user", "content": "x"}], "stop": ""}"#, "stop"),
        (#"{"messages": [{"role": "user", "content": "x"}], "merge": "sum"}"#, "merge"),
        (#"{"messages": [{"role": "user", "content": "x"}], "n": 2}"#, "n"),
        (#"{"messages": [{"role": "user", "content": "x"}], "model": 7}"#, "model"),
        (#"{"messages": [{"role": "user", "content": "x"}], "stream_options": true}"#, "stream_options"),
        (#"{"messages": [{"role": "user", "content": "x"}], "preference_schedule": {}}"#, "preference_schedule"),
        (#"{"messages": [{"role": "user", "content": "x"}], "preference_schedule": [3]}"#, "preference_schedule[0]"),
        (#"{"messages": [{"role": "user", "content": "x"}], "preference_schedule": [{"preference": "concise"}]}"#,
         "preference_schedule[0].from_token"),
        (#"{"messages": [{"role": "user", "content": "x"}], "preference_schedule": [{"from_token": 1}]}"#,
         "preference_schedule[0].preference"),
        (#"{"messages": [{"role": "user", "content": "x"}], "preference_schedule": [{"from_token": 1, "preference": 2}]}"#,
         "preference_schedule[0].preference"),
        (#"{"messages": [{"role": "user", "content": "x"}], "preference_schedule": [{"from_token": 4, "preference": "concise"}, {"from_token": 2, "preference": "friendly"}]}"#,
         "preference_schedule[1].from_token"),
    ])
    func badChat(json: String, field: String) throws {
        let error = try #require(failure(parseChat(json)))
        #expect(error.status == 400)
        #expect(field == "body" ? error.code == "invalid_json" || error.param == "body" : error.param == field)
    }

    @Test("a completion request is raw text; its errors name the field too")
    func completion() throws {
        let request = try parseCompletion(#"{"prompt": "Once upon a time", "max_tokens": 5, "stop": "."}"#).get()
        #expect(request.generate.input == .raw("Once upon a time"))
        #expect(request.generate.stop == ["."])
        #expect(try parseCompletion(#"{"prompt": ["one"]}"#).get().prompt == "one")
        #expect(failure(parseCompletion("{}"))?.param == "prompt")
        #expect(failure(parseCompletion(#"{"prompt": 3}"#))?.param == "prompt")
        #expect(failure(parseCompletion(#"{"prompt": ""}"#))?.param == "prompt")
        #expect(failure(parseCompletion(#"{"prompt": ["a", "b"]}"#))?.param == "prompt")
        #expect(failure(parseCompletion(#"{"prompt": [1]}"#))?.param == "prompt[0]")
        #expect(failure(parseCompletion(#"{"prompt": "a", "top_p": "x"}"#))?.param == "top_p")
    }

    @Test("an error answers as OpenAI's error object")
    func errorBody() throws {
        let error = try #require(failure(parseChat(#"{"messages": 1}"#)))
        let body = try object(error.body)
        let inner = try #require(body["error"] as? [String: Any])
        #expect(inner["param"] as? String == "messages")
        #expect(inner["type"] as? String == "invalid_request_error")
        #expect((inner["message"] as? String)?.contains("messages") == true)
        let notFound = try object(APIError.notFound("/nope").body)["error"] as? [String: Any]
        #expect(notFound?["param"] is NSNull)
    }
}

@Suite("OpenAI answers, routes and errors")
struct AnswerTests {
    let identity = AnswerIdentity(id: "chatcmpl-1", created: 1_700_000_000, model: "mope")
    let done = Done(request: 1, finish: .maxTokens, tokens: 4, text: "Hi there", lostExperts: ["friendly"],
                    failovers: 1, elapsedMicros: 2000, promptTokens: 6,
                    experts: [ExpertUsage(expert: "concise", meanWeight: 1), ExpertUsage(expert: "friendly", meanWeight: 0)])

    @Test("a whole chat answer carries the message, finish reason, usage and the mope object")
    func chatCompletion() throws {
        let body = try object(Answers.chatCompletion(done, identity: identity, options: GenerationOptions(preference: "concise")))
        #expect(body["object"] as? String == "chat.completion")
        let choice = try #require((body["choices"] as? [[String: Any]])?.first)
        #expect((choice["message"] as? [String: Any])?["content"] as? String == "Hi there")
        #expect(choice["finish_reason"] as? String == "length")
        let usage = try #require(body["usage"] as? [String: Any])
        #expect(usage["prompt_tokens"] as? Int == 6 && usage["completion_tokens"] as? Int == 4
            && usage["total_tokens"] as? Int == 10)
        let mope = try #require(body["mope"] as? [String: Any])
        #expect(mope["degraded"] as? Bool == true)
        #expect(mope["lost_experts"] as? [String] == ["friendly"])
        #expect(mope["failovers"] as? Int == 1)
        #expect((mope["experts"] as? [[String: Any]])?.first?["name"] as? String == "concise")
    }

    @Test("stream chunks are chat.completion.chunk events, and the stream ends with data: [DONE]")
    func chunks() throws {
        let first = Answers.chatChunk(identity: identity, role: true, text: "Hi")
        let text = String(decoding: first, as: UTF8.self)
        #expect(text.hasPrefix("data: {") && text.hasSuffix("}\n\n"))
        let chunk = try object(Array(first.dropFirst(6).dropLast(2)))
        #expect(chunk["object"] as? String == "chat.completion.chunk")
        let choice = try #require((chunk["choices"] as? [[String: Any]])?.first)
        #expect((choice["delta"] as? [String: Any])?["role"] as? String == "assistant")
        #expect((choice["delta"] as? [String: Any])?["content"] as? String == "Hi")
        #expect(choice["finish_reason"] is NSNull)
        let last = try object(Array(Answers.chatChunk(identity: identity, finish: .endOfSequence, done: done,
                                                      options: GenerationOptions()).dropFirst(6).dropLast(2)))
        #expect((last["choices"] as? [[String: Any]])?.first?["finish_reason"] as? String == "stop")
        #expect(last["mope"] != nil)
        #expect(String(decoding: SSE.done, as: UTF8.self) == "data: [DONE]\n\n")
    }

    @Test("routes: known paths, 404 for unknown ones, 405 for the wrong method")
    func routes() throws {
        #expect(try APIRoute.match(method: "POST", path: "/v1/chat/completions").get() == .chatCompletions)
        #expect(try APIRoute.match(method: "GET", path: "/v1/models/").get() == .models)
        #expect(try APIRoute.match(method: "HEAD", path: "/health").get() == .health)
        #expect(failure(APIRoute.match(method: "GET", path: "/v2/nothing"))?.status == 404)
        #expect(failure(APIRoute.match(method: "GET", path: "/v1/chat/completions"))?.status == 405)
    }

    @Test("a preference schedule reaches the coordinator's request in canonical form")
    func schedule() throws {
        let parsed = try parseChat(#"{"messages": [{"role": "user", "content": "x"}], "preference": "concise", "#
            + #""preference_schedule": [{"from_token": 0, "preference": "friendly"}, "#
            + #"{"from_token": 5, "preference": {"informative": 2}}]}"#).get()
        #expect(parsed.generate.schedule == [
            PreferenceChange(fromToken: 0, preference: "friendly"),
            PreferenceChange(fromToken: 5, preference: "informative:2"),
        ])
    }

    @Test("a preference change body is a preference, text or object; the session route takes only POST")
    func preferenceUpdate() throws {
        #expect(try PreferenceUpdate.parse(Array(#"{"preference": "concise"}"#.utf8)).preference == "concise")
        #expect(try PreferenceUpdate.parse(Array(#"{"preference": {"friendly": 1}}"#.utf8)).preference == "friendly")
        for bad in ["{}", #"{"preference": 1}"#, #"{"preference": "bogus"}"#, "nope"] {
            do throws(APIError) {
                _ = try PreferenceUpdate.parse(Array(bad.utf8))
                Issue.record("\(bad) parsed")
            } catch {
                #expect(error.status == 400, "\(bad)")
            }
        }
        #expect(try APIRoute.match(method: "POST", path: "/v1/mope/sessions/chatcmpl-1/preference").get()
            == .sessionPreference(id: "chatcmpl-1"))
        #expect(failure(APIRoute.match(method: "GET", path: "/v1/mope/sessions/x/preference"))?.status == 405)
        #expect(failure(APIRoute.match(method: "POST", path: "/v1/mope/sessions//preference"))?.status == 404)
        #expect(failure(APIRoute.match(method: "POST", path: "/v1/mope/sessions/x/y"))?.status == 404)
    }

    @Test("coordinator errors map to 400, 429, 503 and 504")
    func replies() {
        let overloaded = APIError(reply: ErrorReply(session: 1, code: .overloaded, text: "x"))
        #expect(overloaded.status == 429)
        #expect(overloaded.code == "overloaded")
        #expect(APIError(reply: ErrorReply(session: 1, code: .badRequest, text: "x")).status == 400)
        #expect(APIError(reply: ErrorReply(session: 1, code: .contextFull, text: "x")).status == 400)
        #expect(APIError(reply: ErrorReply(session: 1, code: .unavailable, text: "x")).status == 503)
        #expect(APIError(reply: ErrorReply(session: 1, code: .draining, text: "x")).status == 503)
        #expect(APIError(reply: ErrorReply(session: 1, code: .timeout, text: "x")).status == 504)
        #expect(APIError(reply: ErrorReply(session: 1, code: .internal, text: "x")).status == 500)
    }

    @Test("the models list has OpenAI's shape")
    func models() throws {
        let body = try object(APIModel.list(ids: ["mope"], created: 5))
        #expect(body["object"] as? String == "list")
        #expect((body["data"] as? [[String: Any]])?.first?["id"] as? String == "mope")
    }
}

@Suite("Prometheus metrics registry")
struct MetricsTests {
    @Test("counters, gauges and histograms render in the text format, buckets cumulative with +Inf, sum and count")
    func render() {
        let registry = MetricsRegistry()
        registry.declare("requests_total", .counter, help: "Requests.")
        registry.declare("running", .gauge, help: "Running.")
        registry.declare("latency_seconds", .histogram, help: "Latency.", buckets: [0.1, 1])
        registry.add("requests_total", labels: [("outcome", "ok")])
        registry.add("requests_total", 2, labels: [("outcome", "ok")])
        registry.add("requests_total", labels: [("outcome", "say \"hi\"\n")])
        registry.set("running", 3)
        registry.observe("latency_seconds", 0.05)
        registry.observe("latency_seconds", 0.5)
        registry.observe("latency_seconds", 5)
        #expect(registry.value("requests_total", labels: [("outcome", "ok")]) == 3)
        let expected = """
            # HELP requests_total Requests.
            # TYPE requests_total counter
            requests_total{outcome="ok"} 3
            requests_total{outcome="say \\"hi\\"\\n"} 1
            # HELP running Running.
            # TYPE running gauge
            running 3
            # HELP latency_seconds Latency.
            # TYPE latency_seconds histogram
            latency_seconds_bucket{le="0.1"} 1
            latency_seconds_bucket{le="1"} 2
            latency_seconds_bucket{le="+Inf"} 3
            latency_seconds_sum 5.55
            latency_seconds_count 3

            """
        #expect(registry.render() == expected)
    }

    @Test("declared metrics are listed at zero before anything is recorded; labels join le")
    func zero() {
        let registry = ServeMetrics.makeRegistry()
        let text = registry.render()
        #expect(text.contains("mope_sessions_running 0\n"))
        #expect(text.contains("mope_time_to_first_token_seconds_bucket{le=\"+Inf\"} 0\n"))
        registry.observe(ServeMetrics.requestDuration, 0.2, labels: [("endpoint", "models")])
        #expect(registry.render().contains("mope_request_duration_seconds_bucket{endpoint=\"models\",le=\"0.25\"} 1\n"))
    }
}
