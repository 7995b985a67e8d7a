//! Draws the terminal UI's state: the room and our name, the members with their level, mute,
//! loss and jitter, our own level and mute, the chat log, the input line and the keys.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Wrap};

use super::state::UiState;

/// The keys, always on screen.
pub const KEYS_HELP: &str = " Enter: send chat · Ctrl-T: mute/unmute · Ctrl-Q: leave ";
/// Width of a level meter, in cells.
const METER: usize = 12;

/// A level meter from -60 dBFS (empty) to 0 dBFS (full).
fn meter(dbfs: f64) -> String {
    let filled = (((dbfs + 60.0) / 60.0).clamp(0.0, 1.0) * METER as f64).round() as usize;
    format!("{}{}", "█".repeat(filled), "·".repeat(METER - filled))
}

/// Draws the whole screen.
pub fn draw(frame: &mut Frame<'_>, state: &UiState) {
    let rows = Layout::vertical([
        Constraint::Length(members_height(state)),
        Constraint::Min(3),
        Constraint::Length(3),
    ])
    .split(frame.area());
    draw_members(frame, rows[0], state);
    draw_log(frame, rows[1], state);
    draw_input(frame, rows[2], state);
}

fn members_height(state: &UiState) -> u16 {
    // Borders, our own line, and one line per member (at least one, for "nobody else").
    let lines = 3 + state.members.len().max(1);
    u16::try_from(lines).unwrap_or(u16::MAX)
}

fn draw_members(frame: &mut Frame<'_>, area: Rect, state: &UiState) {
    let status = if state.joined { "" } else { " (joining…)" };
    let title = format!(
        " moose-call · room {} · you are {}{status} ",
        state.room, state.me
    );
    let mut lines = vec![own_line(state)];
    if state.members.is_empty() {
        lines.push(Line::from(Span::styled(
            "  nobody else here yet",
            Style::default().fg(Color::DarkGray),
        )));
    }
    for m in &state.members {
        let level = m.voice.as_ref().map_or(-90.0, |v| dbfs(v.level));
        let (loss, jitter) = m.voice.as_ref().map_or((0.0, 0.0), |v| {
            (v.stats.loss_share() * 100.0, v.stats.jitter_ms)
        });
        let mute = if m.muted { "MUTED" } else { "     " };
        lines.push(Line::from(vec![
            Span::raw(format!("  {:<16} ", clip(&m.name, 16))),
            Span::styled(meter(level), Style::default().fg(Color::Green)),
            Span::styled(format!(" {mute}"), Style::default().fg(Color::Red)),
            Span::raw(format!("  loss {loss:4.1}%  jitter {jitter:5.1} ms")),
        ]));
    }
    let block = Block::default().borders(Borders::ALL).title(title);
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

fn own_line(state: &UiState) -> Line<'static> {
    let mute = if state.muted { "MUTED" } else { "     " };
    Line::from(vec![
        Span::styled(
            format!("  {:<16} ", clip(&format!("{} (you)", state.me), 16)),
            Style::default().add_modifier(Modifier::BOLD),
        ),
        Span::styled(meter(state.input_dbfs), Style::default().fg(Color::Cyan)),
        Span::styled(format!(" {mute}"), Style::default().fg(Color::Red)),
    ])
}

fn draw_log(frame: &mut Frame<'_>, area: Rect, state: &UiState) {
    let height = usize::from(area.height.saturating_sub(2));
    let skip = state.log.len().saturating_sub(height);
    let lines: Vec<Line<'_>> = state
        .log
        .iter()
        .skip(skip)
        .map(|l| Line::from(l.as_str()))
        .collect();
    let block = Block::default().borders(Borders::ALL).title(" chat ");
    frame.render_widget(
        Paragraph::new(lines)
            .block(block)
            .wrap(Wrap { trim: false }),
        area,
    );
}

fn draw_input(frame: &mut Frame<'_>, area: Rect, state: &UiState) {
    let block = Block::default()
        .borders(Borders::ALL)
        .title_bottom(KEYS_HELP);
    let width = usize::from(area.width.saturating_sub(4));
    // Show the end of a line longer than the box.
    let shown: String = {
        let chars: Vec<char> = state.input.chars().collect();
        chars[chars.len().saturating_sub(width)..].iter().collect()
    };
    let text = format!("> {shown}");
    let cursor_x = area.x + 1 + u16::try_from(text.chars().count()).unwrap_or(0);
    frame.render_widget(Paragraph::new(text).block(block), area);
    frame.set_cursor_position((cursor_x.min(area.right().saturating_sub(2)), area.y + 1));
}

fn dbfs(rms: f64) -> f64 {
    if rms < 1.0 {
        -90.0
    } else {
        20.0 * (rms / 32_768.0).log10()
    }
}

fn clip(text: &str, width: usize) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(width)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vors_client::CallEvent;
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    #[test]
    fn the_screen_shows_room_members_mute_chat_and_keys() {
        let mut state = UiState::new("lobby", "bob");
        state.apply(CallEvent::Joined("bob".into()));
        state.apply(CallEvent::Joined("alice".into()));
        state.apply(CallEvent::Muted("alice".into()));
        state.apply(CallEvent::Chat {
            from: "alice".into(),
            msg: "hello bob".into(),
        });
        let mut terminal = Terminal::new(TestBackend::new(80, 20)).expect("terminal");
        terminal.draw(|f| draw(f, &state)).expect("draw");
        let screen: String = terminal
            .backend()
            .buffer()
            .content()
            .iter()
            .map(|c| c.symbol())
            .collect();
        for want in [
            "room lobby",
            "you are bob",
            "alice",
            "MUTED",
            "alice: hello bob",
            "Ctrl-T",
        ] {
            assert!(screen.contains(want), "{want:?} not on screen:\n{screen}");
        }
    }

    #[test]
    fn meters_fill_with_level() {
        assert_eq!(meter(-90.0), "·".repeat(METER));
        assert_eq!(meter(0.0), "█".repeat(METER));
        assert_eq!(
            meter(-30.0).chars().filter(|&c| c == '█').count(),
            METER / 2
        );
    }
}
