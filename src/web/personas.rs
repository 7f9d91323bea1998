//! The personas: the list of who an agent can be, and each persona's page with its
//! instructions (markdown from the personas directory, rendered safely).

use actix_web::{HttpResponse, web};
use askama::Template;
use pulldown_cmark::HeadingLevel;

use super::markdown;
use super::page::{Layout, Nav, PageError, Viewer, ok};
use super::view::ago;
use crate::personas::Persona;

#[derive(Template)]
#[template(path = "personas.html")]
struct PersonasPage {
    layout: Layout,
    personas: Vec<Persona>,
}

#[derive(Template)]
#[template(path = "persona.html")]
struct PersonaPage {
    layout: Layout,
    persona: Persona,
    instructions: String,
    /// When it was last loaded, as words and as a timestamp.
    updated: (String, String),
}

/// `GET /personas`.
pub async fn list(viewer: Viewer) -> Result<HttpResponse, PageError> {
    let layout = viewer.layout("Personas", Nav::Personas).await?;
    let personas = Persona::list(&mut *viewer.state.pool.get().await?).await?;
    ok(PersonasPage { layout, personas })
}

/// `GET /personas/{name}`.
pub async fn show(viewer: Viewer, name: web::Path<String>) -> Result<HttpResponse, PageError> {
    let persona = Persona::find(&mut *viewer.state.pool.get().await?, &name).await?;
    let layout = viewer.layout(persona.display_name.clone(), Nav::Personas).await?;
    ok(PersonaPage {
        layout,
        instructions: markdown::render_under(&persona.instructions, HeadingLevel::H2),
        updated: (ago(persona.updated_at), persona.updated_at.to_rfc3339()),
        persona,
    })
}
