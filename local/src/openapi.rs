//! The API's OpenAPI document, generated from the functions' own route declarations.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ComponentsBuilder, InfoBuilder, OpenApi};

use crate::app::HTTP_FUNCTIONS;

/// Where the committed document lives, relative to the workspace root.
pub const COMMITTED_PATH: &str = "docs/openapi.json";

/// The whole API: every HTTP function's routes, bodies and answers, with bearer-JWT security
/// (the health route opts out).
pub fn api_document() -> OpenApi {
    let mut document = HTTP_FUNCTIONS
        .iter()
        .map(|function| (function.openapi)())
        .reduce(|mut document, next| {
            document.merge(next);
            document
        })
        .unwrap_or_default();
    document.info = InfoBuilder::new()
        .title("PipeWise User API")
        .version(pipewise::VERSION)
        .description(Some(
            "Integration accounts, communication targets and outreach runs of a PipeWise user. \
             Every non-2xx answer is an ErrorBody with a stable `code`. Generated from the code \
             (`make openapi`); do not edit by hand.",
        ))
        .build();
    let bearer = SecurityScheme::Http(
        HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .bearer_format("JWT")
            .build(),
    );
    let components = document
        .components
        .take()
        .unwrap_or_else(|| ComponentsBuilder::new().build());
    let mut components = components;
    components.add_security_scheme("bearer", bearer);
    document.components = Some(components);
    document.security = Some(vec![SecurityRequirement::new(
        "bearer",
        Vec::<String>::new(),
    )]);
    document
}

/// The document as committed: pretty JSON with a final newline.
pub fn api_document_json() -> String {
    let mut text = api_document().to_pretty_json().unwrap_or_default();
    text.push('\n');
    text
}
