//! The live usage view of `meshgate proxy`: reports are folded into a [`Session`] as they
//! arrive and the screen is redrawn at a fixed frame rate, never per request. `q`, `Esc`
//! or Ctrl-C (a key in raw mode) leaves it, as does the `stop` future the caller passes
//! (SIGTERM, or SIGINT sent by `kill`); either way the terminal is restored.

use super::report::{Report, Session, UpstreamHealth};
use super::upstream::dollars;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Paragraph, Row, Table};
use ratatui::Frame;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

const FRAME: Duration = Duration::from_millis(100);

/// What the header shows besides the numbers.
pub struct Banner {
    pub local: String,
    pub upstream: String,
    pub exports: Vec<String>,
}

/// Runs the view until the user quits or `stop` completes; the terminal is restored on
/// return (and on panic).
pub async fn run(
    banner: Banner,
    mut reports: mpsc::UnboundedReceiver<Report>,
    in_flight: Arc<AtomicU64>,
    stop_signal: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let mut terminal = ratatui::try_init()?;
    let stop = Arc::new(AtomicBool::new(false));
    let (keys_tx, mut keys) = mpsc::unbounded_channel();
    // Terminal input is blocking: read it on its own thread.
    let reader = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match event::poll(FRAME) {
                    Ok(true) => match event::read() {
                        Ok(e) => {
                            if keys_tx.send(e).is_err() {
                                return;
                            }
                        }
                        Err(_) => return,
                    },
                    Ok(false) => {}
                    Err(_) => return,
                }
            }
        })
    };
    let mut session = Session::default();
    let mut frame = tokio::time::interval(FRAME);
    frame.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    tokio::pin!(stop_signal);
    let result = loop {
        tokio::select! {
            () = &mut stop_signal => break Ok(()),
            _ = frame.tick() => {
                while let Ok(report) = reports.try_recv() {
                    session.apply(report);
                }
                let flying = in_flight.load(Ordering::Relaxed);
                if let Err(e) = terminal.draw(|f| draw(f, &banner, &session, flying)) {
                    break Err(e.into());
                }
            }
            key = keys.recv() => match key {
                Some(Event::Key(k)) if k.kind == KeyEventKind::Press => {
                    let ctrl_c = k.code == KeyCode::Char('c') && k.modifiers.contains(KeyModifiers::CONTROL);
                    if ctrl_c || matches!(k.code, KeyCode::Char('q') | KeyCode::Esc) {
                        break Ok(());
                    }
                }
                Some(_) => {}
                None => break Ok(()),
            }
        }
    };
    stop.store(true, Ordering::Relaxed);
    ratatui::restore();
    let _ = reader.join();
    result
}

fn draw(f: &mut Frame, banner: &Banner, session: &Session, in_flight: u64) {
    let [head, totals, models, recent] = Layout::vertical([
        Constraint::Length(3 + banner.exports.len() as u16),
        Constraint::Length(3),
        Constraint::Length(3 + session.by_model.len().clamp(1, 12) as u16),
        Constraint::Min(4),
    ])
    .areas(f.area());

    let (health, color) = match &session.upstream {
        UpstreamHealth::Unknown => ("checking".to_string(), Color::Yellow),
        UpstreamHealth::Reachable => ("reachable".to_string(), Color::Green),
        UpstreamHealth::Unreachable(why) => (format!("UNREACHABLE: {why}"), Color::Red),
    };
    let mut lines = vec![
        Line::from(format!(
            "{} -> {}   in flight: {in_flight}   q: quit",
            banner.local, banner.upstream
        )),
        Line::styled(format!("upstream: {health}"), Style::new().fg(color)),
    ];
    lines.extend(banner.exports.iter().map(|e| Line::from(e.as_str())));
    f.render_widget(
        Paragraph::new(lines).block(Block::new().borders(Borders::ALL).title(" meshgate proxy ")),
        head,
    );

    let t = &session.total;
    f.render_widget(
        Paragraph::new(format!(
            "requests {}  errors {}  input {}  cached {}  output {}  cost {}",
            t.requests,
            t.errors,
            t.input,
            t.cached,
            t.output,
            dollars(t.cost)
        ))
        .block(Block::new().borders(Borders::ALL).title(" session ")),
        totals,
    );

    let bold = Style::new().add_modifier(Modifier::BOLD);
    let rows = session.by_model.iter().map(|(model, m)| {
        Row::new(vec![
            model.clone(),
            m.requests.to_string(),
            m.input.to_string(),
            m.cached.to_string(),
            m.output.to_string(),
            dollars(m.cost),
            m.errors.to_string(),
        ])
    });
    f.render_widget(
        Table::new(
            rows,
            [
                Constraint::Min(20),
                Constraint::Length(9),
                Constraint::Length(11),
                Constraint::Length(11),
                Constraint::Length(11),
                Constraint::Length(14),
                Constraint::Length(7),
            ],
        )
        .header(
            Row::new([
                "model", "requests", "input", "cached", "output", "cost", "errors",
            ])
            .style(bold),
        )
        .block(Block::new().borders(Borders::ALL).title(" usage by model ")),
        models,
    );

    let shown = usize::from(recent.height.saturating_sub(3));
    let rows = session.recent.iter().take(shown).map(|r| {
        let time = chrono::DateTime::<chrono::Local>::from(r.call.at).format("%H:%M:%S");
        let (tokens, cost) = match &r.metered {
            Some(m) => (
                format!("{}/{}", m.input_tokens(), m.output_tokens()),
                dollars(m.charged()),
            ),
            None => ("-".into(), "?".into()),
        };
        let row = Row::new(vec![
            time.to_string(),
            r.call.surface.as_str().to_string(),
            r.model().to_string(),
            r.call.status.map_or("-".into(), |s| s.to_string()),
            format!("{}ms", r.call.latency.as_millis()),
            tokens,
            cost,
        ]);
        match r.is_error() {
            true => row.style(Style::new().fg(Color::Red)),
            false => row,
        }
    });
    f.render_widget(
        Table::new(
            rows,
            [
                Constraint::Length(9),
                Constraint::Length(10),
                Constraint::Min(20),
                Constraint::Length(7),
                Constraint::Length(9),
                Constraint::Length(15),
                Constraint::Length(14),
            ],
        )
        .header(
            Row::new([
                "time", "surface", "model", "status", "latency", "in/out", "cost",
            ])
            .style(bold),
        )
        .block(
            Block::new()
                .borders(Borders::ALL)
                .title(" recent requests "),
        ),
        recent,
    );
}
