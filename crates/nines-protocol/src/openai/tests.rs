use super::*;

#[test]
fn parses_head_and_splices_model_only() {
    let body = br#"{"model":"chat-default","messages":[{"role":"user","content":"hi"}],"x_custom":{"a":[1,2]},"stream":true,"stream_options":{"include_usage":true},"max_tokens":7}"#;
    let head = parse_chat_head(body).unwrap();
    assert_eq!(head.model, "chat-default");
    assert!(head.stream);
    assert!(head.include_usage);
    assert_eq!(head.max_output_tokens, Some(7));
    assert_eq!(&body[head.model_span.clone()], br#""chat-default""#);
    let out = splice_model(body, head.model_span, "gpt-4o-mini");
    let expected = br#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"x_custom":{"a":[1,2]},"stream":true,"stream_options":{"include_usage":true},"max_tokens":7}"#;
    assert_eq!(out, expected.to_vec());
}

#[test]
fn keeps_whitespace_and_escapes_around_model() {
    let body = b"{ \"messages\": [] ,\n  \"model\" : \"a\\\"b\" }";
    let head = parse_chat_head(body).unwrap();
    assert_eq!(head.model, "a\"b");
    let out = splice_model(body, head.model_span, "up/stream");
    assert_eq!(
        out,
        b"{ \"messages\": [] ,\n  \"model\" : \"up/stream\" }".to_vec()
    );
}

#[test]
fn rejects_bad_bodies() {
    assert!(matches!(
        parse_chat_head(b"{nope"),
        Err(RequestError::Malformed(_))
    ));
    assert!(matches!(
        parse_chat_head(b"[]"),
        Err(RequestError::Malformed(_))
    ));
    assert_eq!(
        parse_chat_head(br#"{"messages":[]}"#),
        Err(RequestError::MissingModel)
    );
    assert_eq!(
        parse_chat_head(br#"{"model":3,"messages":[]}"#),
        Err(RequestError::ModelNotString)
    );
    assert_eq!(
        parse_chat_head(br#"{"model":"m"}"#),
        Err(RequestError::Missing("messages"))
    );
    assert_eq!(
        parse_chat_head(br#"{"model":"","messages":[]}"#),
        Err(RequestError::MissingModel)
    );
}

#[test]
fn max_completion_tokens_wins_and_tools_detected() {
    let head = parse_chat_head(
        br#"{"model":"m","messages":[],"max_tokens":5,"max_completion_tokens":9,"tools":[{}]}"#,
    )
    .unwrap();
    assert_eq!(head.max_output_tokens, Some(9));
    assert!(head.has_tools);
}

#[test]
fn embeddings_head() {
    let body = br#"{"input":["a","b"],"model":"emb"}"#;
    let head = parse_embeddings_head(body).unwrap();
    assert_eq!(head.model, "emb");
    assert_eq!(&body[head.model_span], br#""emb""#);
    assert_eq!(
        parse_embeddings_head(br#"{"model":"emb"}"#),
        Err(RequestError::Missing("input"))
    );
}
