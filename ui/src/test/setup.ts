// Matchers such as toBeInTheDocument() and toHaveAccessibleName() for every test file.
import "@testing-library/jest-dom/vitest";
